"""The process backend: rlimits, a private uid when root, setsid and a whole-tree kill. Not isolation.

It shares the host's filesystem view and network namespace, so it is for development and for machines
where nothing stronger works; every result it returns says so.
"""

from __future__ import annotations

import logging
import os

from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.host_backend import HostBackend
from verifarm.sandbox.program import Limits, Program
from verifarm.sandbox.supervisor import RawOutcome, SpawnRequest, program_env, supervise
from verifarm.sandbox.workdir import HostWorkDir, RunIdentity

# Whether the process backend also runs under a private uid is decided per run; its output always says it
# is not isolated, so nobody mistakes a development run for a safe one.
UNSAFE_NOTE = "UNSAFE: process backend (rlimits only, no isolation); for development"


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
            SpawnRequest.under(
                limits,
                program.command,
                cwd=str(workdir.path),
                env=program_env(home=str(workdir.path), tmpdir=str(workdir.path)),
                stdin=program.stdin,
                uid=identity.uid,
                gid=identity.gid,
                cgroup_procs=cgroup_procs,
            )
        )
