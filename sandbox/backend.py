"""The one small interface every sandbox backend keeps: run a Program under Limits, close, probe.

Backends import this module; choosing and keeping them is `selection.py`'s job, which imports the backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from verifarm.sandbox.program import ExecResult, Limits, Program


class Backend(ABC):
    """Runs one Program under Limits; start lazily, close always."""

    name: str

    @abstractmethod
    def run(self, program: Program, limits: Limits) -> ExecResult: ...

    def close(self) -> None:  # noqa: B027 -- a no-op by default: a backend that holds nothing needs no override
        """Release what the backend holds (containers, pools); idempotent."""

    @classmethod
    @abstractmethod
    def probe(cls) -> str | None:
        """None when the backend works on this machine, else the reason it does not."""
