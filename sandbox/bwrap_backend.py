"""The bwrap backend: a warm pool (warm_pool.py) of long-lived bubblewrap sandboxes, the design docker has.

Each sandbox has its own pid, net, ipc, uts and cgroup namespaces, a read-only system view, tmpfs /work,
/tmp and /dev/shm (size- and inode-capped, mounted by us), Docker's default seccomp filter (`--seccomp`,
which also refuses new namespaces of any kind, user namespaces included), no new privileges, every
capability dropped but the six the agent needs (the bounding set too, as in a docker container), and a
cgroup of its own: a CPU quota (one core by default), a process cap and a memory cap re-set before each run. `agent.py` is its pid 1; each run is forked from the agent's fork server
under a host uid reserved for this sandbox alone, with the run's rlimits, and wiped afterwards.

Needs root (bwrap is started as root without a user namespace, so the agent can switch to the run uid and
programs can never signal, trace or talk to it); without root `bwrap_single.py` runs one sandbox per run.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from verifarm.sandbox.bwrap_sandbox import system_view, unusable_reason
from verifarm.sandbox.cgroup import CGROUP_ROOT, GROUP_NAME, Cgroup
from verifarm.sandbox.seccomp import filter_fd
from verifarm.sandbox.supervisor import SANDBOX_PATH
from verifarm.sandbox.warm_pool import (
    AGENT_CAPABILITIES,
    AGENT_COMMAND,
    SANDBOX_SOURCE,
    AgentSocket,
    WarmPoolBackend,
    WarmSandbox,
)
from verifarm.sandbox.workdir import acquire_identity, mount_tmpfs, state_root, sweep_uid, unmount

# bwrap's --die-with-parent is PR_SET_PDEATHSIG, which fires when the *thread* that forked bwrap ends, not the
# process: a sandbox started from a short-lived thread (a ThreadPoolExecutor's worker, a web request's) died with
# it, and the pool's next run on it found no agent. Every warm sandbox is started from this one thread, which
# lives as long as the process.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verifarm-bwrap-launcher")

NAME_PREFIX = "verifarm-bwrap"
SCRATCH = {"work": ("/work", 0o755), "tmp": ("/tmp", 0o1777), "shm": ("/dev/shm", 0o1777)}


@dataclass(frozen=True)
class BwrapConfig:
    pool_size: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    memory_bytes: int = 2 * 1024 * 1024 * 1024  # cgroup cap of one sandbox, over all its processes
    pids: int = 256
    cpus: float = 1.0  # cores one sandbox (so one run) may hold at once
    work_bytes: int = 64 * 1024 * 1024  # tmpfs sizes of /work, /tmp and /dev/shm
    start_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"BwrapConfig.pool_size must be at least 1, got {self.pool_size}")
        if self.memory_bytes < 64 * 1024 * 1024 or self.pids < 8 or self.cpus <= 0:
            raise ValueError("BwrapConfig needs memory_bytes >= 64 MiB, pids >= 8 and cpus > 0")
        if self.work_bytes < 1024 * 1024:
            raise ValueError(f"BwrapConfig.work_bytes must be at least 1 MiB, got {self.work_bytes}")


def sandbox_argv(socket_dir: Path, scratch: dict[str, Path], seccomp_fd: int, run_uid: int) -> list[str]:
    argv = [
        "bwrap",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--hostname",
        "sandbox",
        *system_view(),
        "--ro-bind",
        str(SANDBOX_SOURCE),
        "/opt/verifarm",
        "--bind",
        str(socket_dir),
        "/run/verifarm",
    ]
    for name, (target, _) in SCRATCH.items():
        argv += ["--bind", str(scratch[name]), target]
    argv += ["--cap-drop", "ALL"]
    # CAP_SETPCAP only until the agent has narrowed the bounding set, which bubblewrap leaves full.
    for capability in (*AGENT_CAPABILITIES, "SETPCAP"):
        argv += ["--cap-add", f"CAP_{capability}"]
    return argv + ["--seccomp", str(seccomp_fd), "--chdir", "/", "--", *AGENT_COMMAND, str(run_uid)]


class WarmBwrapSandbox(WarmSandbox):
    """One running bwrap sandbox: its folder on the host (agent socket, scratch tmpfs), cgroup and uid."""

    def __init__(self, config: BwrapConfig):
        self.name = f"{NAME_PREFIX}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.identity = acquire_identity()
        self.folder = state_root() / "bwrap" / self.name
        self.process: subprocess.Popen | None = None
        self.cgroup = None
        self.destroyed = False
        self.scratch = {name: self.folder / name for name in SCRATCH}
        try:
            self.folder.mkdir(parents=True, mode=0o700)
            (self.folder / "agent").mkdir(mode=0o700)
            self.agent = AgentSocket(self.folder / "agent")
            for name, (_, mode) in SCRATCH.items():
                self.scratch[name].mkdir(mode=0o700)
                mount_tmpfs(self.scratch[name], config.work_bytes, mode)
            # None where the cgroupfs is read-only (inside some containers): the runs' results then say that
            # memory is capped per process only, and the CPU quota is missing.
            self.cgroup = Cgroup.create(config.memory_bytes, config.pids, config.cpus, prefix=self.name)
            self._start()
        except BaseException:
            self.destroy()
            raise
        self.wait_for_agent(config.start_timeout, self._log_tail)
        self._protect_agent()

    def _start(self) -> None:
        run_uid = self.identity.uid
        if run_uid is None:  # only root gets one, and only root runs the warm pool (see backend.py)
            raise RuntimeError("the warm bwrap pool needs root: there is no uid to run programs under")
        seccomp_fd = filter_fd()
        procs_files = self.cgroup.procs_files if self.cgroup is not None else []

        def join_cgroup() -> None:  # in bwrap's process before exec: everything it starts is inside
            for procs in procs_files:
                with open(procs, "w") as handle:
                    handle.write(str(os.getpid()))

        try:
            with open(self.folder / "bwrap.log", "wb") as log:
                self.process = _LAUNCHER.submit(
                    subprocess.Popen,
                    sandbox_argv(self.agent.folder, self.scratch, seccomp_fd, run_uid),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env={"PATH": SANDBOX_PATH},
                    cwd="/",
                    pass_fds=(seccomp_fd,),
                    preexec_fn=join_cgroup,
                    start_new_session=True,
                ).result()
        finally:
            os.close(seccomp_fd)

    def _log_tail(self) -> str:
        try:
            return (self.folder / "bwrap.log").read_text(errors="replace")[-500:] or "no message"
        except OSError:
            return "no log"

    def _protect_agent(self) -> None:
        """The agent and its fork server are never the OOM killer's choice; programs always are."""
        if self.process is None:
            return
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            for child in children:
                Path(f"/proc/{child}/oom_score_adj").write_text("-1000")
        except OSError:
            pass

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        if self.cgroup is not None:
            self.cgroup.kill_all()
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.identity.uid is not None:
            sweep_uid(self.identity.uid)
        remove_sandbox_folder(self.folder)
        self.identity.release()


def remove_sandbox_folder(folder: Path) -> None:
    for name in SCRATCH:
        if (folder / name).is_dir():
            unmount(folder / name)
            try:
                (folder / name).rmdir()
            except OSError:
                pass
    for leftover in ("agent/agent.sock", "bwrap.log"):
        (folder / leftover).unlink(missing_ok=True)
    for empty in ("agent", ""):
        try:
            (folder / empty).rmdir()
        except OSError:
            pass


def remove_stale_sandboxes() -> int:
    """Remove what sandboxes of a crashed process left: their folders (tmpfs mounts) and empty cgroups.
    The sandboxes themselves died with their parent (--die-with-parent)."""
    removed = 0
    root = state_root() / "bwrap"
    for folder in root.iterdir() if root.is_dir() else ():
        owner = folder.name.removeprefix(f"{NAME_PREFIX}-").split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            remove_sandbox_folder(folder)
            removed += 1
    for parent in {
        (CGROUP_ROOT / controller).resolve() / GROUP_NAME for controller in ("memory", "pids", "cpu", "cpuacct", "")
    }:
        for group in parent.glob(f"{NAME_PREFIX}-*") if parent.is_dir() else ():
            owner = group.name.removeprefix(f"{NAME_PREFIX}-").split("-")[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                try:
                    group.rmdir()
                except OSError:  # still holds a process: not stale after all
                    pass
    return removed


class BwrapBackend(WarmPoolBackend):
    name = "bwrap"

    def __init__(self, config: BwrapConfig | None = None):
        self.config = config or BwrapConfig()
        super().__init__(self.config.pool_size, self.config.memory_bytes)
        remove_stale_sandboxes()

    @classmethod
    def probe(cls) -> str | None:
        if os.geteuid() != 0:
            return "the warm bwrap pool needs root (one sandbox per run is used otherwise)"
        reason = unusable_reason()
        if reason is not None:
            return reason
        try:
            sandbox = WarmBwrapSandbox(BwrapConfig(pool_size=1, start_timeout=20))
        except Exception as error:  # any failure here means: bwrap sandboxes do not work on this machine
            return f"bwrap sandbox failed to start: {error}"
        sandbox.destroy()
        return None

    def _start_sandbox(self) -> WarmBwrapSandbox:
        return WarmBwrapSandbox(self.config)
