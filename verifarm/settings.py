"""Where the farm keeps its state, read from VERIFARM_* environment variables.

The defaults make one machine work with nothing running: a SQLite store, a local
checkpoint folder and a private Redis started by the CLI. Setting the URLs turns
the same program into a multi-machine farm.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VERIFARM_", extra="ignore")

    home: Path = Field(default=Path(".verifarm"), description="folder for local state")
    redis_url: str | None = Field(default=None, description="broker; None starts a private Redis")
    database_url: str | None = Field(default=None, description="rollout store; None is a SQLite file in home")
    checkpoint_dir: Path | None = Field(default=None, description="policy registry; None is home/checkpoints")
    sandbox_backend: str = Field(default="auto", description="docker, bwrap, process or auto")

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
