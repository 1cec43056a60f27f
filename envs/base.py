"""The pieces every environment is built from: a task, a verdict, a task family.

A task family is a pure generator plus a pure verifier; the Gymnasium env is a
thin wrapper around one, so the farm can generate and score without Gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Task:
    task_id: str  # stable: same family, seed and difficulty give the same id
    prompt: str
    reference: str  # a reference completion; it must score 1.0
    difficulty: int
    data: dict[str, Any] = field(default_factory=dict)  # what the verifier needs


@dataclass(frozen=True)
class Verdict:
    reward: float  # in [0, 1]
    passed: bool
    reason: str  # short, for people
    details: dict[str, Any] = field(default_factory=dict)
    infra_error: bool = False  # the checker failed, not the completion
    # Time spent inside the sandbox, and the part of it spent compiling; kept out of the env's info so that steps
    # stay deterministic.
    sandbox_seconds: float = 0.0
    compile_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.reward <= 1.0:
            raise ValueError(f"reward must lie in [0, 1], got {self.reward}")


class TaskFamily(Protocol):
    """A pure generator and verifier. Optional extras the Gymnasium env reads when present: ``charset``,
    ``max_prompt_chars`` and ``max_completion_chars`` (its Text spaces), ``max_turns`` and
    ``feedback(task, completion, verdict, turn, max_turns) -> str`` (multi-turn), ``close()`` (child processes),
    ``cheap_verifier`` (True: verifying costs less than a database round trip, so the farm's shared verdict cache
    is not consulted for it)."""

    # Read, never set: properties, so that a frozen dataclass's fields (read-only) match them too.
    @property
    def name(self) -> str: ...

    @property
    def verifier_version(self) -> str: ...

    @property
    def min_difficulty(self) -> int: ...

    @property
    def max_difficulty(self) -> int: ...

    def generate(self, seed: int, difficulty: int) -> Task: ...

    def verify(self, task: Task, completion: str) -> Verdict: ...


class MultiTurnFamily(TaskFamily, Protocol):
    """A family with ``feedback``: the next observation after a failed attempt of a multi-turn episode."""

    def feedback(self, task: Task, completion: str, verdict: Verdict, turn: int, max_turns: int) -> str: ...


@dataclass(frozen=True)
class EnvEntry:
    """One env id of the catalog: the family it builds, the options its id fixes, the options a caller may set
    (None: every keyword the family takes), and the languages its completions are written in (empty: no programs)."""

    family: Callable[..., TaskFamily]
    fixed: dict[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] | None = None
    languages: tuple[str, ...] = ()

    def build(self, env_id: str, **options: Any) -> TaskFamily:
        """The family, built with the same keyword options ``gymnasium.make`` takes; bad options are a ValueError."""
        refused = sorted(set(options) - set(self.options)) if self.options is not None else []
        if refused:
            raise ValueError(f"bad options for {env_id}: unexpected keyword argument {refused[0]!r}")
        try:
            return self.family(**self.fixed, **options)
        except TypeError as error:
            if "argument" not in str(error):  # a bug inside a family, not an option the caller got wrong
                raise
            raise ValueError(f"bad options for {env_id}: {error}") from None


# Longer completions are refused before any parsing: a policy that rambles gets 0, and no verifier (math-verify's
# parser, the sandbox) is fed megabytes of text.
MAX_COMPLETION_CHARS = 100_000


def as_completion_text(completion: str | bytes) -> str:
    """A completion as text: bytes (a raw, possibly binary, sample) are decoded leniently, never rejected."""
    if isinstance(completion, bytes):
        return completion.decode("utf-8", errors="replace")
    if not isinstance(completion, str):
        raise ValueError(f"a completion must be str or bytes, got {type(completion).__name__}")
    return completion


def as_valid_utf8(text: str) -> str:
    """``text`` with lone surrogates (which no file or pipe can carry) replaced, for handing to a sandbox."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def check_completion_size(completion: str, limit: int = MAX_COMPLETION_CHARS) -> Verdict | None:
    """A zero verdict for an over-long completion, else None."""
    if len(completion) > limit:
        return Verdict(
            0.0,
            False,
            f"completion too long ({len(completion)} chars > {limit})",
            {"completion_chars": len(completion)},
        )
    return None
