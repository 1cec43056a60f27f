"""Which backend runs a program: the names, the factory, the default choice, and one instance per process.

`run(program, limits, backend)` is the entry point the rest of verifarm uses. Backends are kept per process
(warm docker containers are the reason) and closed at exit.
"""

from __future__ import annotations

import atexit
import os
import threading

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.bwrap_backend import BwrapBackend
from verifarm.sandbox.bwrap_single import SingleRunBwrapBackend
from verifarm.sandbox.docker_backend import DockerBackend
from verifarm.sandbox.process_backend import ProcessBackend
from verifarm.sandbox.program import ExecResult, Limits, Program

BACKEND_NAMES = ("docker", "bwrap", "process")  # strongest first
ENV_OVERRIDE = "VERIFARM_SANDBOX_BACKEND"


def _backend_class(name: str) -> type[Backend]:
    if name == "process":
        return ProcessBackend
    if name == "bwrap":  # the warm pool needs root to run programs under a uid the agent does not share
        return BwrapBackend if os.geteuid() == 0 else SingleRunBwrapBackend
    if name == "docker":
        return DockerBackend
    raise ValueError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} or 'auto'")


class _BackendCache:
    """Per-process backends, so warm containers are reused across run() calls; closed at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: dict[str, Backend] = {}
        self._probes: dict[str, str | None] = {}
        self._owner_pid = os.getpid()

    def _reset_after_fork(self) -> None:
        # A forked worker (Celery prefork) must not share the parent's containers or sockets.
        if os.getpid() != self._owner_pid:
            self._backends = {}
            self._owner_pid = os.getpid()

    def probe(self, name: str) -> str | None:
        with self._lock:
            if name not in self._probes:
                self._probes[name] = _backend_class(name).probe()
            return self._probes[name]

    def get(self, name: str) -> Backend:
        with self._lock:
            self._reset_after_fork()
            if name not in self._backends:
                self._backends[name] = _backend_class(name)()
            return self._backends[name]

    def close_all(self) -> None:
        with self._lock:
            if os.getpid() == self._owner_pid:
                for backend in self._backends.values():
                    backend.close()
            self._backends = {}


_CACHE = _BackendCache()
atexit.register(_CACHE.close_all)


def probe_backend(name: str) -> str | None:
    """None when the named backend works here, else why not (cached per process)."""
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} or 'auto'")
    return _CACHE.probe(name)


def default_backend_name() -> str:
    """The strongest backend that works here; VERIFARM_SANDBOX_BACKEND (other than 'auto') overrides."""
    forced = os.environ.get(ENV_OVERRIDE, "auto").strip() or "auto"
    if forced != "auto":
        _backend_class(forced)
        return forced
    for name in BACKEND_NAMES:
        if probe_backend(name) is None:
            return name
    raise RuntimeError("no sandbox backend works on this machine")


def resolve_backend_name(name: str = "auto") -> str:
    if name == "auto":
        return default_backend_name()
    _backend_class(name)
    return name


def get_backend(name: str | Backend = "auto") -> Backend:
    """The process-wide instance of the named backend ('auto' picks the default); a Backend passes through,
    so callers with their own configured instance (e.g. a bigger docker pool) use the same functions."""
    if isinstance(name, Backend):
        return name
    return _CACHE.get(resolve_backend_name(name))


def close_backends() -> None:
    _CACHE.close_all()


def run(program: Program, limits: Limits | None = None, backend: str | Backend = "auto") -> ExecResult:
    """Run program under limits on the named backend; the result always names the backend used."""
    return get_backend(backend).run(program, limits or Limits())
