"""Host-side run scaffolding: a private uid per concurrent run, a fresh work dir, and the sweep afterwards.

When we are root every run gets its own otherwise unused uid (held by an flock while the run lasts), so
the run cannot touch other runs or our own process, RLIMIT_NPROC counts only its processes, and a final
`kill(-1)` as that uid reaches even daemons that left the process group.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RUN_UID_BASE = 1_610_000_000  # far above any real account
RUN_UID_SLOTS = 4096
DEFAULT_WORK_BYTES = 64 * 1024 * 1024
WORK_INODES = 32768  # empty files cost no size but kernel memory: cap their number too
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class RunIdentity:
    uid: int | None  # None when we are not root and cannot switch users
    gid: int | None
    lock_fd: int | None

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)


def state_root() -> Path:
    """Root-owned folder holding uid locks and work dirs; others may traverse it but not list or write it."""
    root = Path(tempfile.gettempdir()) / f"verifarm-sandbox-{os.getuid()}"
    root.mkdir(mode=0o711, exist_ok=True)
    info = root.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{root} is not a folder owned by us; refusing to run sandboxes there")
    os.chmod(root, 0o711)
    (root / "uids").mkdir(mode=0o700, exist_ok=True)
    return root


def acquire_identity() -> RunIdentity:
    if os.geteuid() != 0:
        return RunIdentity(None, None, None)
    locks = state_root() / "uids"
    start = os.getpid() % RUN_UID_SLOTS
    for offset in range(RUN_UID_SLOTS):
        slot = (start + offset) % RUN_UID_SLOTS
        fd = os.open(locks / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        uid = RUN_UID_BASE + slot
        sweep_uid(uid)  # a crashed earlier holder may have left processes behind
        if uid_processes(uid, include_zombies=True):
            # Orphaned zombies still count against RLIMIT_NPROC until the host's init reaps them.
            os.close(fd)
            continue
        return RunIdentity(uid, uid, fd)
    raise RuntimeError(f"all {RUN_UID_SLOTS} sandbox uid slots are busy")


def uid_processes(uid: int, include_zombies: bool = False) -> list[int]:
    """Pids running as uid; stopped processes always count, zombies only when asked."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                owner = os.stat(f"/proc/{entry}").st_uid
                # A non-dumpable process (one that made itself so, or a zombie of one) shows a root-owned
                # /proc folder whatever its uid: ask its status for the real one.
                if owner != uid and not (owner == 0 and _real_uid(entry) == uid):
                    continue
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    state = handle.read().rsplit(b")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if include_zombies or state not in (b"Z", b"X"):  # a zombie holds no resources; its reaper is not ours
                pids.append(int(entry))
    return pids


def _real_uid(pid: str) -> int | None:
    with open(f"/proc/{pid}/status", "rb") as handle:
        for line in handle:
            if line.startswith(b"Uid:"):
                return int(line.split()[1])
    return None


def sweep_uid(uid: int, attempts: int = 50) -> bool:
    """Kill every process running as uid (kill(-1) from that uid, so a forking tree cannot outrun it)."""
    for _ in range(attempts):
        if not uid_processes(uid):
            return True
        # The shell's builtin kill: no procps needed; kill(-1) from the uid spares only the caller itself.
        subprocess.run(
            ["/bin/sh", "-c", "kill -9 -1"],
            user=uid,
            group=uid,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        time.sleep(0.005)
    return not uid_processes(uid)


class HostWorkDir:
    """A fresh private folder holding the program's files, owned by the run's uid, removed afterwards.

    As root it is a tmpfs of its own (size-capped, nosuid, nodev; its pages are charged to the run's
    cgroup), so a run can neither fill the host's disk nor leave anything on it; otherwise a plain folder.
    """

    def __init__(self, identity: RunIdentity, size_bytes: int = DEFAULT_WORK_BYTES):
        self.identity = identity
        self.path = Path(tempfile.mkdtemp(prefix="run-", dir=state_root()))
        self.tmpfs = identity.uid is not None and _mount_tmpfs(self.path, size_bytes, identity.uid)

    def write(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            # Executable so a compiled binary handed to a later run can be started; harmless otherwise.
            target.chmod(0o755)
        uid, gid = self.identity.uid, self.identity.gid
        if uid is not None and gid is not None:
            for folder, _dirs, names in os.walk(self.path):
                os.chown(folder, uid, gid)
                for name in names:
                    os.chown(os.path.join(folder, name), uid, gid)
        os.chmod(self.path, 0o700)

    def read_outputs(self, names: tuple[str, ...], max_bytes: int) -> dict[str, bytes]:
        return read_outputs(str(self.path), names, max_bytes)

    def remove(self) -> None:
        if self.tmpfs and _LIBC.umount2(str(self.path).encode(), MNT_DETACH) == 0:
            self.path.rmdir()
            return
        shutil.rmtree(self.path, ignore_errors=True)  # fd-based on Linux: never follows a planted symlink


def _mount_tmpfs(path: Path, size_bytes: int, uid: int, mode: int = 0o700) -> bool:
    """A size- and inode-capped tmpfs (nosuid, nodev) at path, owned by uid; False when the kernel refused."""
    options = f"size={size_bytes},nr_inodes={WORK_INODES},mode={mode:o},uid={uid},gid={uid}".encode()
    return _LIBC.mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) == 0


def mount_tmpfs(path: Path, size_bytes: int, mode: int) -> None:
    """A root-owned capped tmpfs at path (a warm sandbox's scratch folder); raises OSError on failure."""
    if not _mount_tmpfs(path, size_bytes, 0, mode):
        number = ctypes.get_errno()
        raise OSError(number, f"mounting a tmpfs at {path} failed: {os.strerror(number)}")


def unmount(path: Path) -> None:
    _LIBC.umount2(str(path).encode(), MNT_DETACH)


def read_outputs(folder: str, names: tuple[str, ...], max_bytes: int) -> dict[str, bytes]:
    """Read plain regular files only: a symlink planted by the program must not leak a host file."""
    found: dict[str, bytes] = {}
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                info = os.fstat(fd)
                if stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes:
                    with os.fdopen(fd, "rb", closefd=False) as handle:
                        found[name] = handle.read(max_bytes + 1)[:max_bytes]
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return found
