"""The process backend: rlimits, a private uid when root, setsid and a whole-tree kill. Not isolation.

It shares the host's filesystem view and network namespace, so it is for development and for machines
where nothing stronger works; every result it returns says so.
"""

from __future__ import annotations

import logging
import os

from verifarm.sandbox.backend import UNSAFE_NOTE
from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.host_backend import HostBackend
from verifarm.sandbox.program import Limits, Program
from verifarm.sandbox.supervisor import RawOutcome, SpawnRequest, supervise
from verifarm.sandbox.workdir import HostWorkDir, RunIdentity

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def clean_env(home: str) -> dict[str, str]:
    """The only environment a program sees: nothing of the host's."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


class ProcessBackend(HostBackend):
    name = "process"

    def __init__(self) -> None:
        logging.getLogger(__name__).warning("sandbox backend 'process' in use: %s", UNSAFE_NOTE)

    @classmethod
    def probe(cls) -> str | None:
        return None if hasattr(os, "pidfd_open") else "needs Linux pidfds (kernel >= 5.3)"

    def _notes(self, identity: RunIdentity, cgroup: Cgroup | None, limits: Limits) -> list[str]:
        return [UNSAFE_NOTE, "network NOT blocked", *super()._notes(identity, cgroup, limits)]

    def _supervise(
        self,
        program: Program,
        limits: Limits,
        workdir: HostWorkDir,
        identity: RunIdentity,
        cgroup_procs: tuple[str, ...],
    ) -> RawOutcome:
        return supervise(
            SpawnRequest(
                argv=list(program.command),
                cwd=str(workdir.path),
                env=clean_env(str(workdir.path)),
                stdin=program.stdin,
                cpu_seconds=limits.cpu_seconds,
                wall_seconds=limits.wall_seconds,
                memory_bytes=limits.memory_bytes,
                max_processes=limits.max_processes,
                output_bytes=limits.output_bytes,
                file_size_bytes=limits.file_size_bytes,
                open_files=limits.open_files,
                uid=identity.uid,
                gid=identity.gid,
                cgroup_procs=cgroup_procs,
            )
        )
