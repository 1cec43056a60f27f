"""Where the farm keeps its state and how patient it is, read once from VERIFARM_* environment variables.

The defaults make one machine work with nothing running: a SQLite store, a local checkpoint folder and a private
Redis started by the CLI. Setting the URLs turns the same program into a multi-machine farm. Each entry point (a
CLI command, a worker process) calls `load_settings()` once and passes what it needs down explicitly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from verifarm.redaction import redact_url


class FarmTuning(BaseModel):
    """The farm's timing knobs (VERIFARM_FARM_<FIELD>), shared by every worker of a farm."""

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


class Settings(BaseSettings):
    # `farm` is nested: VERIFARM_FARM_VISIBILITY_TIMEOUT_S sets farm.visibility_timeout_s (split once after FARM).
    # Inputs stay out of validation errors: a refused URL may carry a password.
    model_config = SettingsConfigDict(
        env_prefix="VERIFARM_",
        extra="ignore",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        hide_input_in_errors=True,
    )

    home: Path = Field(default=Path(".verifarm"), description="folder for local state")
    redis_url: str | None = Field(default=None, description="broker; None starts a private Redis")
    database_url: str | None = Field(default=None, description="rollout store; None is a SQLite file in home")
    checkpoint_dir: Path | None = Field(default=None, description="policy registry; None is home/checkpoints")
    sandbox_backend: str = Field(default="auto", description="docker, bwrap, process or auto")
    registry_url: str | None = Field(
        default=None,
        description="the trainer's registry over HTTP (`verifarm policy serve-registry`); checkpoint_dir then "
        "caches the versions fetched from it",
    )
    farm: FarmTuning = Field(default_factory=FarmTuning, description="timing knobs of the rollout farm")

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        """`postgresql://` (psycopg 3, SQLAlchemy's default driver), `postgresql+psycopg2://` and `postgres://` work."""
        if not url:
            return None
        # SQLAlchemy only when a URL is set: every command (shell completion too) loads the settings.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if url.startswith("postgres://"):  # libpq's short scheme, which SQLAlchemy does not know
            url = "postgresql://" + url.removeprefix("postgres://")
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise ValueError(
                f"VERIFARM_DATABASE_URL={redact_url(url)} is not a database URL: use "
                "sqlite:///path/rollouts.db or postgresql://user@host/db"
            ) from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"VERIFARM_DATABASE_URL names a {backend!r} database; the store runs on SQLite "
                "(sqlite:///path.db) or PostgreSQL (postgresql://user@host/db)"
            )
        return url

    @field_validator("registry_url")
    @classmethod
    def _http_registry(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"VERIFARM_REGISTRY_URL={redact_url(url)} must start with http:// or https://")
        return url or None

    @property
    def default_store_file(self) -> Path:
        """The SQLite file that holds the store when no database URL is set."""
        return (self.home / "rollouts.db").resolve()

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.default_store_file}"

    def existing_store_url(self) -> str | None:
        """The store to read, or None when nothing can be stored yet: no database URL is set and the home's
        SQLite file does not exist (so readers never create an empty store as a side effect)."""
        if self.database_url or self.default_store_file.is_file():
            return self.store_url
        return None

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.home / "checkpoints"


def load_settings() -> Settings:
    return Settings()
