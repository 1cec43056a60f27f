"""The dashboard's typed config: the same store, registry and broker as the CLI, plus what only it needs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.settings import Settings
from verifarm.trainer.metrics import tensorboard_dir_for


class DashboardConfig(BaseModel):
    store_url: str = Field(min_length=1)
    checkpoint_dir: Path
    broker_url: str | None = None  # None: the workers page says no broker is configured
    tensorboard_dir: Path  # the trainer's event files, read back for the loss curves
    flower_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    page_size: int = Field(default=50, ge=1, le=500)  # records per page of the dataset browser
    # Records one page of the dataset browser examines at most: a filter matching almost nothing shows what this
    # many found (and an "older" link) rather than scanning the whole store while the dashboard waits.
    scan_window: int = Field(default=10_000, ge=1, le=1_000_000)
    preview_chars: int = Field(default=160, ge=16, le=2000)  # prompt/completion shown in lists
    text_chars: int = Field(default=20_000, ge=100, le=1_000_000)  # of one prompt/completion on its own page
    refresh_seconds: float = Field(default=2.0, gt=0, le=3600)  # live progress polling

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> DashboardConfig:
        """The farm the CLI would use: its store, checkpoints and broker (a private Redis only if running)."""
        broker = settings.redis_url or EmbeddedRedis(settings.home / "redis").running_url()
        values = dict(
            store_url=settings.store_url,
            checkpoint_dir=settings.checkpoints,
            broker_url=broker,
            tensorboard_dir=tensorboard_dir_for(settings.home / "trainer" / "state"),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
