"""Where a farm process finds its broker, store and checkpoints, and how patient it is with failures.

One typed config passed explicitly to the Celery app, the workers and the campaign API; it is built from the
shared VERIFARM_* settings plus the farm's own tuning knobs (VERIFARM_FARM_*).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from verifarm.settings import Settings


class FarmTuning(BaseSettings):
    """Timing knobs, from VERIFARM_FARM_* so that worker processes started elsewhere share them."""

    model_config = SettingsConfigDict(env_prefix="VERIFARM_FARM_", extra="ignore")

    # A task not acknowledged this long after delivery (its worker died) is handed to another worker.
    # It must exceed the longest batch, or a slow batch is run twice (harmless, since batches are
    # idempotent, but wasted work).
    visibility_timeout_s: int = Field(default=900, ge=2)
    # How often workers sweep for such abandoned tasks.
    restore_interval_s: int = Field(default=10, ge=1)
    # How often workers look for batches the broker lost outright (rollout/reconcile.py).
    reconcile_interval_s: int = Field(default=60, ge=1)
    # Sandbox failures are retried this many times per completion before the record says infra_error.
    infra_retries: int = Field(default=2, ge=0, le=20)
    # Torch threads per worker process: one per process keeps N processes on N cores from oversubscribing.
    torch_threads: int = Field(default=1, ge=1, le=256)


class FarmConfig(BaseModel):
    broker_url: str = Field(min_length=1)
    store_url: str = Field(min_length=1)
    checkpoint_dir: Path
    # The trainer's registry over HTTP; checkpoint_dir is then this machine's cache of it.
    registry_url: str | None = None
    sandbox_backend: str = "auto"
    visibility_timeout_s: int = Field(default=900, ge=2)
    restore_interval_s: int = Field(default=10, ge=1)
    reconcile_interval_s: int = Field(default=60, ge=1)
    infra_retries: int = Field(default=2, ge=0, le=20)
    torch_threads: int = Field(default=1, ge=1, le=256)

    @classmethod
    def from_settings(
        cls, settings: Settings, broker_url: str | None = None, tuning: FarmTuning | None = None
    ) -> FarmConfig:
        """The farm of these settings; `broker_url` overrides VERIFARM_REDIS_URL (e.g. a private Redis)."""
        from verifarm.rollout.embedded_redis import EmbeddedRedis

        url = broker_url or settings.redis_url or EmbeddedRedis(settings.home / "redis").running_url()
        if not url:
            raise ValueError(
                "no Redis broker: set VERIFARM_REDIS_URL, or start the pool with `verifarm workers start` "
                "(it runs a private Redis under VERIFARM_HOME that other commands then find)"
            )
        tuning = tuning or FarmTuning()
        return cls(
            broker_url=url,
            store_url=settings.store_url,
            checkpoint_dir=settings.checkpoints,
            registry_url=settings.registry_url,
            sandbox_backend=settings.sandbox_backend,
            visibility_timeout_s=tuning.visibility_timeout_s,
            restore_interval_s=tuning.restore_interval_s,
            reconcile_interval_s=tuning.reconcile_interval_s,
            infra_retries=tuning.infra_retries,
            torch_threads=tuning.torch_threads,
        )


def farm_environment(farm: FarmConfig, base: dict[str, str]) -> dict[str, str]:
    """`base` (e.g. os.environ) with the VERIFARM_* variables that make a child process join this farm."""
    env = {k: v for k, v in base.items() if not k.startswith("VERIFARM_")}
    env.update(
        {
            "VERIFARM_REDIS_URL": farm.broker_url,
            "VERIFARM_DATABASE_URL": farm.store_url,
            "VERIFARM_CHECKPOINT_DIR": str(farm.checkpoint_dir),
            "VERIFARM_SANDBOX_BACKEND": farm.sandbox_backend,
            "VERIFARM_FARM_VISIBILITY_TIMEOUT_S": str(farm.visibility_timeout_s),
            "VERIFARM_FARM_RESTORE_INTERVAL_S": str(farm.restore_interval_s),
            "VERIFARM_FARM_RECONCILE_INTERVAL_S": str(farm.reconcile_interval_s),
            "VERIFARM_FARM_INFRA_RETRIES": str(farm.infra_retries),
            "VERIFARM_FARM_TORCH_THREADS": str(farm.torch_threads),
        }
    )
    if farm.registry_url:
        env["VERIFARM_REGISTRY_URL"] = farm.registry_url
    if "VERIFARM_HOME" in base:
        env["VERIFARM_HOME"] = base["VERIFARM_HOME"]
    return env
