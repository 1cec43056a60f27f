"""Per-run control groups for the host backends: one memory and process cap over the whole process tree.

RLIMIT_AS caps each process, so a program that forks N children could use N times its memory limit; a
cgroup caps their sum (tmpfs pages included) and counts every process. Works with cgroup v1 (memory and
pids hierarchies) and v2 (a `verifarm-sandbox` subtree at the root); where neither is writable (not root,
a read-only cgroupfs) the backends run without one and say so in ExecResult.detail.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_NAME = "verifarm-sandbox"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _read_int(path: Path, key: str | None = None) -> int:
    try:
        text = path.read_text()
    except OSError:
        return 0
    if key is None:
        return int(text.split()[0]) if text.strip() else 0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


@dataclass
class RunCgroup:
    """The folders of one run's cgroup: v2 has one, v1 one per hierarchy (memory, pids)."""

    version: int
    folders: list[Path]

    @property
    def procs_files(self) -> list[str]:
        """Files a child writes its pid into (before exec) to join the cgroup."""
        return [str(folder / "cgroup.procs") for folder in self.folders]

    @classmethod
    def create(cls, memory_bytes: int, max_processes: int) -> RunCgroup | None:
        """A fresh cgroup with the caps set, or None when this machine does not let us make one."""
        if os.geteuid() != 0:
            return None
        name = f"run-{uuid.uuid4().hex[:16]}"
        try:
            if (CGROUP_ROOT / "cgroup.controllers").exists():
                return cls._create_v2(name, memory_bytes, max_processes)
            return cls._create_v1(name, memory_bytes, max_processes)
        except OSError:
            return None

    @classmethod
    def _create_v1(cls, name: str, memory_bytes: int, max_processes: int) -> RunCgroup | None:
        memory_parent, pids_parent = CGROUP_ROOT / "memory" / GROUP_NAME, CGROUP_ROOT / "pids" / GROUP_NAME
        if not (memory_parent.parent / "memory.limit_in_bytes").exists() or not pids_parent.parent.is_dir():
            return None
        memory_parent.mkdir(exist_ok=True)
        pids_parent.mkdir(exist_ok=True)
        group = cls(1, [memory_parent / name, pids_parent / name])
        for folder in group.folders:
            folder.mkdir()
        try:
            _write(group.folders[0] / "memory.limit_in_bytes", str(memory_bytes))
            if (group.folders[0] / "memory.memsw.limit_in_bytes").exists():
                _write(group.folders[0] / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(group.folders[1] / "pids.max", str(max_processes))
        except OSError:
            group.remove()
            raise
        return group

    @classmethod
    def _create_v2(cls, name: str, memory_bytes: int, max_processes: int) -> RunCgroup | None:
        controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        if "memory" not in controllers or "pids" not in controllers:
            return None
        parent = CGROUP_ROOT / GROUP_NAME
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", "+memory +pids")
        group = cls(2, [parent / name])
        group.folders[0].mkdir()
        try:
            _write(group.folders[0] / "memory.max", str(memory_bytes))
            if (group.folders[0] / "memory.swap.max").exists():
                _write(group.folders[0] / "memory.swap.max", "0")
            _write(group.folders[0] / "pids.max", str(max_processes))
        except OSError:
            group.remove()
            raise
        return group

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the run for going over the memory cap."""
        folder = self.folders[0]
        if self.version == 2:
            return _read_int(folder / "memory.events", "oom_kill") > 0
        return _read_int(folder / "memory.oom_control", "oom_kill") > 0 or \
            _read_int(folder / "memory.failcnt") > 0 and _read_int(folder / "memory.oom_control", "under_oom") > 0

    def peak_memory(self) -> int:
        folder = self.folders[0]
        return _read_int(folder / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))

    def _pids(self) -> list[int]:
        pids: set[int] = set()
        for folder in self.folders:
            try:
                pids.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(pids)

    def kill_all(self, attempts: int = 100) -> bool:
        """SIGKILL every process in the cgroup until it is empty; False if some would not go."""
        for _ in range(attempts):
            pids = self._pids()
            if not pids:
                return True
            if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
                try:
                    _write(self.folders[0] / "cgroup.kill", "1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.002)
        return not self._pids()

    def remove(self) -> None:
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # zombies not yet reaped still hold it for a moment
                    time.sleep(0.01)


class ContainerMemory:
    """The memory cgroup of a running container, seen from the host: per-run caps and OOM counts.

    Docker fixes a container's memory limit at start; the warm pool re-caps it before each run so the
    whole process tree of the run (plus the agent's headroom) fits the run's own memory limit.
    """

    def __init__(self, folder: Path, version: int):
        self.folder, self.version = folder, version
        self._cap: int | None = None

    @classmethod
    def of_process(cls, pid: int) -> ContainerMemory | None:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "" and (CGROUP_ROOT / path.lstrip("/") / "memory.max").exists():
                return cls(CGROUP_ROOT / path.lstrip("/"), 2)
            if "memory" in controllers.split(","):
                folder = CGROUP_ROOT / "memory" / path.lstrip("/")
                if (folder / "memory.limit_in_bytes").exists():
                    return cls(folder, 1)
        return None

    def cap(self, memory_bytes: int) -> bool:
        """Set the container's memory cap; False when the kernel refused (usage still above it)."""
        if self._cap == memory_bytes:
            return True
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            _write(self.folder / name, str(memory_bytes))
        except OSError:
            self._cap = None
            return False
        self._cap = memory_bytes
        return True

    def oom_kills(self) -> int:
        if self.version == 2:
            return _read_int(self.folder / "memory.events", "oom_kill")
        return _read_int(self.folder / "memory.oom_control", "oom_kill")
