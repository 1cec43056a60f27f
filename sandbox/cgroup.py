"""Control groups of sandbox runs: one memory cap, process cap and CPU quota over a whole process tree.

RLIMIT_AS caps each process, so a program that forks N children could use N times its memory limit, and
RLIMIT_CPU caps CPU seconds, not cores: a multi-threaded program would hold every core of the machine for
its whole wall time. A cgroup caps the sum (tmpfs pages included), counts every process and holds the tree
to its share of cores (a CFS quota), and its own accounting says how much CPU the tree used.

Works with cgroup v1 (memory, pids, cpu and cpuacct hierarchies) and v2 (a `verifarm-sandbox` subtree at
the root). A cgroup is made for one run of the process backend, for one warm bwrap sandbox (re-capped
before each of its runs), or found for a docker container. Where no cgroupfs is writable (not root, a
read-only cgroupfs) the host backends run without one and say so in ExecResult.detail.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP_NAME = "verifarm-sandbox"
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


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


def _unified() -> bool:
    """Whether the machine's cgroup root is v2 (a hybrid machine's v2 mount holds no controllers)."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()


@dataclass
class Cgroup:
    """One cgroup: v2 has one folder, v1 one per controller (several names may share a mounted folder)."""

    version: int
    folders: dict[str, Path]  # controller -> folder; absent controllers are simply not capped
    owned: bool = True  # made by us (removed by us), or found (a docker container's)
    _memory_cap: int | None = field(default=None, repr=False)

    @property
    def procs_files(self) -> list[str]:
        """Files a child writes its pid into (before exec) to join the cgroup."""
        return sorted({str(folder / "cgroup.procs") for folder in self.folders.values()})

    @classmethod
    def create(cls, memory_bytes: int, max_processes: int, cpus: float | None, prefix: str = "run") -> Cgroup | None:
        """A fresh cgroup with the caps set (cpus None: no CPU quota), or None when this machine does not let
        us make one."""
        if os.geteuid() != 0:
            return None
        if cpus is not None and cpus <= 0:
            raise ValueError(f"cpus must be positive, got {cpus!r}")
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        try:
            group = cls._create_v2(name) if _unified() else cls._create_v1(name)
        except OSError:
            return None
        if group is None:
            return None
        try:
            group.cap_memory(memory_bytes, strict=True)
            _write(group.folders["pids"] / "pids.max", str(max_processes))
            if cpus is not None and "cpu" in group.folders:
                quota = max(1000, int(cpus * CPU_PERIOD_US))  # the kernel's smallest quota is 1 ms
                if group.version == 2:
                    _write(group.folders["cpu"] / "cpu.max", f"{quota} {CPU_PERIOD_US}")
                else:
                    _write(group.folders["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    _write(group.folders["cpu"] / "cpu.cfs_quota_us", str(quota))
        except OSError:
            group.remove()
            return None
        return group

    @classmethod
    def _create_v1(cls, name: str) -> Cgroup | None:
        folders: dict[str, Path] = {}
        for controller in V1_CONTROLLERS:
            mount = CGROUP_ROOT / controller
            if not mount.is_dir():
                continue
            parent = mount.resolve() / GROUP_NAME  # cpu and cpuacct are often one mount under two names
            parent.mkdir(exist_ok=True)
            folders[controller] = parent / name
        if "memory" not in folders or "pids" not in folders:
            return None
        group = cls(1, folders)
        for folder in set(folders.values()):
            folder.mkdir(exist_ok=True)
        return group

    @classmethod
    def _create_v2(cls, name: str) -> Cgroup | None:
        available = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        if "memory" not in available or "pids" not in available:
            return None
        wanted = [controller for controller in ("memory", "pids", "cpu") if controller in available]
        parent = CGROUP_ROOT / GROUP_NAME
        parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", " ".join(f"+{controller}" for controller in wanted))
        folder = parent / name
        folder.mkdir()
        return cls(2, dict.fromkeys(wanted, folder))

    @classmethod
    def of_process(cls, pid: int) -> Cgroup | None:
        """The cgroup a running process is in (a docker container's agent), for re-capping and accounting."""
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except OSError:
            return None
        folders: dict[str, Path] = {}
        unified = _unified()
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if unified and controllers == "":
                folder = CGROUP_ROOT / path.lstrip("/")
                return (
                    cls(2, {"memory": folder, "pids": folder, "cpu": folder}, owned=False)
                    if (folder / "memory.max").exists()
                    else None
                )
            for controller in controllers.split(","):
                if controller in V1_CONTROLLERS:
                    folder = CGROUP_ROOT / controllers / path.lstrip("/")
                    if folder.is_dir():
                        folders[controller] = folder
        if unified or "memory" not in folders:
            return None
        return cls(1, folders, owned=False)

    def cap_memory(self, memory_bytes: int, strict: bool = False) -> bool:
        """Set the memory cap (swap included where the kernel counts it); False when the kernel refused
        (usage still above it). Re-capping to the same value costs nothing."""
        if self._memory_cap == memory_bytes:
            return True
        folder = self.folders["memory"]
        try:
            if self.version == 2:
                _write(folder / "memory.max", str(memory_bytes))
                if (folder / "memory.swap.max").exists():
                    _write(folder / "memory.swap.max", "0")
            else:
                # memsw must stay >= the memory cap: raise whichever order keeps that true.
                memsw = folder / "memory.memsw.limit_in_bytes"
                order = ["memory.limit_in_bytes", memsw.name]
                if memsw.exists() and memory_bytes > _read_int(folder / "memory.limit_in_bytes"):
                    order.reverse()
                for name in order:
                    if name == memsw.name and not memsw.exists():
                        continue
                    _write(folder / name, str(memory_bytes))
        except OSError:
            self._memory_cap = None
            if strict:
                raise
            return False
        self._memory_cap = memory_bytes
        return True

    def oom_kills(self) -> int:
        """Processes the kernel has killed in this cgroup for going over its memory cap, so far."""
        folder = self.folders["memory"]
        if self.version == 2:
            return _read_int(folder / "memory.events", "oom_kill")
        kills = _read_int(folder / "memory.oom_control", "oom_kill")
        # Kernels without the oom_kill counter: a hit cap while under OOM counts as one.
        if (
            kills == 0
            and _read_int(folder / "memory.failcnt") > 0
            and _read_int(folder / "memory.oom_control", "under_oom") > 0
        ):
            return 1
        return kills

    def peak_memory(self) -> int:
        folder = self.folders["memory"]
        return _read_int(folder / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"))

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process that was ever in the cgroup (the cgroup's own accounting)."""
        if self.version == 2:
            folder = self.folders.get("cpu") or self.folders["memory"]
            return _read_int(folder / "cpu.stat", "usage_usec") / 1e6
        if "cpuacct" not in self.folders:
            return None
        return _read_int(self.folders["cpuacct"] / "cpuacct.usage") / 1e9

    def cpu_quota(self) -> float | None:
        """Cores the cgroup may use at once; None when it has no quota."""
        folder = self.folders.get("cpu")
        if folder is None:
            return None
        try:
            if self.version == 2:
                quota_text, period_text = (folder / "cpu.max").read_text().split()
                return None if quota_text == "max" else int(quota_text) / int(period_text)
            quota = _read_int(folder / "cpu.cfs_quota_us")
        except (OSError, ValueError):
            return None
        return None if quota <= 0 else quota / _read_int(folder / "cpu.cfs_period_us")

    def pids(self) -> list[int]:
        found: set[int] = set()
        for folder in set(self.folders.values()):
            try:
                found.update(int(line) for line in (folder / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return sorted(found)

    def kill_all(self, attempts: int = 100) -> bool:
        """SIGKILL every process in the cgroup until it is empty; False if some would not go."""
        for _ in range(attempts):
            pids = self.pids()
            if not pids:
                return True
            kill_file = self.folders["memory"] / "cgroup.kill"
            if self.version == 2 and kill_file.exists():
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.002)
        return not self.pids()

    def remove(self) -> None:
        if not self.owned:
            return
        for folder in set(self.folders.values()):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # zombies not yet reaped still hold it for a moment
                    time.sleep(0.01)
