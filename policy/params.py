"""How to sample: one validated type, with one set of bounds, from a campaign spec or a server request down to
the sampler (`LocalPolicy.sample_with`, `HttpPolicy.sample_with`). How many samples and the seed are per call."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# Upper bounds that catch typos (an extra zero or three), not real requests.
MAX_TEMPERATURE = 5.0
MAX_NEW_TOKENS = 32_768


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE)  # 0 is greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(default=256, ge=1, le=MAX_NEW_TOKENS)
    stop: tuple[str, ...] = ()

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, stop: Any) -> Any:
        return () if stop is None else stop  # specs stored before stop became a tuple hold null for none

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, stop: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(stop)}")
        return stop

    @classmethod
    def checked(cls, **values: Any) -> SamplingParams:
        """The params, or a ValueError that names each bad field in one line (for callers outside pydantic)."""
        try:
            return cls(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, problem['loc'])) or 'sampling'}: {problem['msg']}" for problem in error.errors()
            )
            raise ValueError(f"invalid sampling settings: {problems}") from None
