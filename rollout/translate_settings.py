"""What a `translate` campaign's spec holds: where its sources come from, the target languages, and the sources
frozen into it (see `verifarm.rollout.translate` for reading them from the store)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from verifarm.sandbox.languages import get_language

TRANSLATE_ENV_ID = "verifarm/Translate-v0"
# Envs whose passing records are programs in a known language (their family is a ProgramFamily).
SOURCE_ENV_IDS = (
    "verifarm/Program-v0",
    "verifarm/ProgramMultiTurn-v0",
    "verifarm/CProgram-v0",
    "verifarm/CProgramMultiTurn-v0",
)


class SourceProgram(BaseModel):
    """One verified source solution, with what regenerates its problem and hidden tests."""

    model_config = ConfigDict(extra="forbid")

    record_id: str
    env_id: str
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int
    difficulty: int
    language: str
    completion: str


class TranslateSettings(BaseModel):
    """Where the sources come from, which languages to translate into, and how hard to check."""

    model_config = ConfigDict(extra="forbid")

    source_campaign: str | None = None
    source_env: str | None = None
    target_languages: list[str] = Field(min_length=1)
    differential_inputs: int = Field(default=50, ge=50, le=10_000)
    max_sources: int | None = Field(default=None, ge=1)
    sources: list[SourceProgram] = Field(default_factory=list)  # frozen from the store when the campaign is made

    @field_validator("target_languages")
    @classmethod
    def _known_languages(cls, languages: list[str]) -> list[str]:
        names = [get_language(language).name for language in languages]  # ValueError names the known ones
        if len(set(names)) != len(names):
            raise ValueError(f"target languages repeat: {languages}")
        return names

    @field_validator("source_env")
    @classmethod
    def _program_env(cls, env_id: str | None) -> str | None:
        if env_id is not None and env_id not in SOURCE_ENV_IDS:
            raise ValueError(f"source_env must be a program env ({', '.join(SOURCE_ENV_IDS)}), got {env_id!r}")
        return env_id

    def pairs(self) -> list[tuple[SourceProgram, str]]:
        """Every (source, target language) task of the campaign, in task order."""
        return [
            (source, target) for source in self.sources for target in self.target_languages if target != source.language
        ]
