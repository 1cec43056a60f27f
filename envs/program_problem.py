"""A program problem: a statement, an input generator, a trusted Python solver and reference programs.

The C env poses problems with a C reference only; the Program env poses ones with a reference in every language of
the sandbox's table. Expected outputs are always ``solve(input)``, computed in the trusted parent, never in a sandbox.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from verifarm.sandbox.languages import LANGUAGE_NAMES


@dataclass(frozen=True)
class ProgramProblem:
    name: str
    statement: str
    make_input: Callable[[random.Random, int], str]  # (rng, size) -> stdin text
    solve: Callable[[str], str]  # stdin text -> expected stdout, trusted Python
    references: dict[str, str]  # language name -> complete program

    def __post_init__(self) -> None:
        unknown = set(self.references) - set(LANGUAGE_NAMES)
        if not self.references or unknown:
            raise ValueError(
                f"problem {self.name!r} needs references in languages of the table, got {sorted(self.references)}"
            )

    def require_languages(self, languages: tuple[str, ...]) -> None:
        """Refuse a problem set that some language it is posed in has no reference for."""
        missing = set(languages) - set(self.references)
        if missing:
            raise ValueError(f"problem {self.name!r} lacks references in {sorted(missing)}")
