"""Where the farm keeps its state, read from VERIFARM_* environment variables.

The defaults make one machine work with nothing running: a SQLite store, a local
checkpoint folder and a private Redis started by the CLI. Setting the URLs turns
the same program into a multi-machine farm.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from verifarm.redaction import redact_url


class Settings(BaseSettings):
    # Inputs stay out of validation errors: a refused URL may carry a password.
    model_config = SettingsConfigDict(env_prefix="VERIFARM_", extra="ignore", hide_input_in_errors=True)

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

    @field_validator("registry_url")
    @classmethod
    def _http_registry(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"VERIFARM_REGISTRY_URL={redact_url(url)} must start with http:// or https://")
        return url or None

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, url: str | None) -> str | None:
        """`postgresql://` (psycopg 3, SQLAlchemy's default driver), `postgresql+psycopg2://` and `postgres://` work."""
        if not url:
            return None
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

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'rollouts.db').resolve()}"

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_dir or self.home / "checkpoints"


def load_settings() -> Settings:
    return Settings()
