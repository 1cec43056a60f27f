"""What the process and bwrap backends share: a private uid, a fresh work dir, a per-run cgroup, and the
sweep afterwards that leaves no process of the run alive."""

from __future__ import annotations

from abc import abstractmethod

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.outcome import classify, infra_error
from verifarm.sandbox.program import ExecResult, Limits, Program
from verifarm.sandbox.supervisor import RawOutcome
from verifarm.sandbox.workdir import DEFAULT_WORK_BYTES, HostWorkDir, RunIdentity, acquire_identity, sweep_uid

# Cores one run may hold at once, as a docker container's and a warm bwrap sandbox's default CPU quota.
RUN_CPUS = 1.0


class HostBackend(Backend):
    # Processes the backend itself adds to the run's tree, and memory they need on top of the program's.
    extra_processes = 0
    memory_headroom = 32 * 1024 * 1024

    @abstractmethod
    def _supervise(
        self,
        program: Program,
        limits: Limits,
        workdir: HostWorkDir,
        identity: RunIdentity,
        cgroup_procs: tuple[str, ...],
    ) -> RawOutcome: ...

    @staticmethod
    def _work_bytes(program: Program, limits: Limits) -> int:
        """Room for the program's files, two files at the size limit, and ordinary scratch."""
        inputs = sum(len(data) for data in program.file_bytes().values())
        return max(DEFAULT_WORK_BYTES, inputs + 2 * limits.file_size_bytes)

    def _notes(self, identity: RunIdentity, cgroup: Cgroup | None, limits: Limits) -> list[str]:
        notes = []
        if identity.uid is None:
            notes.append("same uid as the caller (not root)")
        if cgroup is None:
            notes.append("no cgroup: memory is capped per process only, and CPU seconds but not cores")
        return notes

    def run(self, program: Program, limits: Limits) -> ExecResult:
        try:
            identity = acquire_identity()
        except (OSError, RuntimeError) as error:
            return infra_error(self.name, f"could not reserve a run uid: {error}")
        cgroup = Cgroup.create(
            limits.memory_bytes + self.memory_headroom, limits.max_processes + self.extra_processes, RUN_CPUS
        )
        try:
            workdir = HostWorkDir(identity, self._work_bytes(program, limits))
            try:
                workdir.write(program.file_bytes())
                raw = self._supervise(program, limits, workdir, identity, tuple(cgroup.procs_files) if cgroup else ())
                if cgroup is not None:
                    cgroup.kill_all()
                    raw.memory_exceeded = cgroup.oom_kills() > 0
                    raw.peak_memory_bytes = max(raw.peak_memory_bytes, cgroup.peak_memory())
                if identity.uid is not None and not sweep_uid(identity.uid):
                    return infra_error(self.name, "processes of the run survived the sweep")
                outputs = workdir.read_outputs(program.outputs, limits.file_size_bytes)
            finally:
                workdir.remove()
        except OSError as error:
            return infra_error(self.name, f"work dir failed: {error}")
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                cgroup.remove()
            identity.release()
        return classify(raw, limits, self.name, outputs, note="; ".join(self._notes(identity, cgroup, limits)))
