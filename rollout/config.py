"""The farm a process belongs to: its broker, store, checkpoints, sandbox backend and timing knobs, resolved.

Built once from the `Settings` at an entry point (a CLI command, a worker process start) and passed down
explicitly: to the Celery app, which carries it to every worker process in its config, and from there to the
worker's runtime. Nothing of it travels through environment variables.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.settings import FarmTuning, Settings


class FarmConfig(BaseModel):
    broker_url: str = Field(min_length=1)
    store_url: str = Field(min_length=1)
    checkpoint_dir: Path
    # The trainer's registry over HTTP; checkpoint_dir is then this machine's cache of it.
    registry_url: str | None = None
    sandbox_backend: str = "auto"
    tuning: FarmTuning = Field(default_factory=FarmTuning)

    @classmethod
    def from_settings(cls, settings: Settings, broker_url: str | None = None) -> FarmConfig:
        """The farm of these settings; `broker_url` overrides VERIFARM_REDIS_URL (e.g. a private Redis)."""
        url = broker_url or settings.redis_url or EmbeddedRedis(settings.home / "redis").running_url()
        if not url:
            raise ValueError(
                "no Redis broker: set VERIFARM_REDIS_URL, or start the pool with `verifarm workers start` "
                "(it runs a private Redis under VERIFARM_HOME that other commands then find)"
            )
        return cls(
            broker_url=url,
            store_url=settings.store_url,
            checkpoint_dir=settings.checkpoints,
            registry_url=settings.registry_url,
            sandbox_backend=settings.sandbox_backend,
            tuning=settings.farm,
        )
