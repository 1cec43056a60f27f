"""The process backend: rlimits, a private uid when root, setsid and a whole-tree kill. Not isolation.

It shares the host's filesystem view and network namespace, so it is for development and for machines
where nothing stronger works; every result it returns says so.
"""

from __future__ import annotations

import logging
import os

from verifarm.sandbox.backend import UNSAFE_NOTE, Backend
from verifarm.sandbox.outcome import classify, infra_error
from verifarm.sandbox.program import ExecResult, Limits, Program
from verifarm.sandbox.supervisor import SpawnRequest, supervise
from verifarm.sandbox.workdir import HostWorkDir, acquire_identity, sweep_uid

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def clean_env(home: str) -> dict[str, str]:
    """The only environment a program sees: nothing of the host's."""
    return {"PATH": SANDBOX_PATH, "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


class ProcessBackend(Backend):
    name = "process"

    def __init__(self) -> None:
        logging.getLogger(__name__).warning("sandbox backend 'process' in use: %s", UNSAFE_NOTE)

    @classmethod
    def probe(cls) -> str | None:
        return None if hasattr(os, "pidfd_open") else "needs Linux pidfds (kernel >= 5.3)"

    def run(self, program: Program, limits: Limits) -> ExecResult:
        if limits.network:
            network_note = "network requested: the process backend cannot turn it off anyway"
        else:
            network_note = "network NOT blocked"
        try:
            identity = acquire_identity()
        except (OSError, RuntimeError) as error:
            return infra_error(self.name, f"could not reserve a run uid: {error}")
        try:
            workdir = HostWorkDir(identity)
            try:
                workdir.write(program.file_bytes())
                raw = supervise(SpawnRequest(
                    argv=list(program.command), cwd=str(workdir.path), env=clean_env(str(workdir.path)),
                    stdin=program.stdin, cpu_seconds=limits.cpu_seconds, wall_seconds=limits.wall_seconds,
                    memory_bytes=limits.memory_bytes, max_processes=limits.max_processes,
                    output_bytes=limits.output_bytes, file_size_bytes=limits.file_size_bytes,
                    open_files=limits.open_files, uid=identity.uid, gid=identity.gid))
                if identity.uid is not None and not sweep_uid(identity.uid):
                    return infra_error(self.name, "processes of the run survived the sweep")
                outputs = workdir.read_outputs(program.outputs, limits.file_size_bytes)
            finally:
                workdir.remove()
        except OSError as error:
            return infra_error(self.name, f"work dir failed: {error}")
        finally:
            identity.release()
        uid_note = "private uid" if identity.uid is not None else "same uid as the caller"
        return classify(raw, limits, self.name, outputs, note=f"{UNSAFE_NOTE}; {uid_note}; {network_note}")
