"""Run untrusted programs under hard limits; backends behind one small interface."""

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.program import ExecResult, Limits, Program, Status
from verifarm.sandbox.selection import close_backends, default_backend_name, get_backend, probe_backend, run

__all__ = [
    "Backend",
    "ExecResult",
    "Limits",
    "Program",
    "Status",
    "close_backends",
    "default_backend_name",
    "get_backend",
    "probe_backend",
    "run",
]
