"""bwrap without root: one bubblewrap sandbox per run, started as the caller's uid in an unprivileged user
namespace (user, pid, net, ipc, uts, cgroup namespaces), under the seccomp filter of seccomp.py (Docker's
default profile) with nested user namespaces disabled, a read-only system view, rlimits and a private work dir.

Without root there is neither a second uid to run programs as (so no warm sandbox whose agent the program
could not reach) nor a cgroup: the warm pool (bwrap_backend.py) needs root; this is what remains without it.
The pid namespace dies with its init, taking daemons along.

Where its statuses differ from the warm pools' (not a backend CI runs, which is root): the program's parent
is the namespace's init, of the program's own uid, so `kill(getppid(), SIGKILL)` is silently dropped (a
pool's parent is root: PermissionError), and `kill(-1, ...)` finds nobody to signal (ESRCH).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from verifarm.sandbox.bwrap_sandbox import supports, system_view, unusable_reason
from verifarm.sandbox.host_backend import HostBackend
from verifarm.sandbox.program import Limits, Program
from verifarm.sandbox.seccomp import filter_fd
from verifarm.sandbox.supervisor import RawOutcome, SpawnRequest, program_env, supervise
from verifarm.sandbox.workdir import RUN_UID_BASE, HostWorkDir, RunIdentity

# bwrap's monitor exits without reaping its namespace init, which then lingers as a zombie of the host's
# pid 1 and keeps counting against the run uid's RLIMIT_NPROC. This small parent is a child subreaper:
# it waits for bwrap, then for everything reparented to it, so the run leaves nothing behind and the CPU
# time of the whole tree reaches our wait4. It also moves the setup marker pipe to fd 3 for the shell.
REAPER = r"""
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
# Python ignores SIGPIPE and SIGXFSZ; the program must get the default actions back (file size limit).
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
marker = int(sys.argv[1])
if marker != 3:
    os.dup2(marker, 3)
    os.close(marker)
child = os.fork()
if child == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
os.close(3)
code = 1
while True:
    try:
        pid, status = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        code = code if code >= 0 else 128 - code
os._exit(code)
"""
# The sandbox's pid 1 (bwrap --as-pid-1) and the program's parent. bwrap's own init would take any wait
# status of its first child, a stop included, for its end; this one waits as the fork server does (a process
# that stops itself, e.g. after ptrace(PTRACE_TRACEME), is still running), reaps orphans meanwhile, and ends
# the way the program ended (bwrap reports a signal death as 128+N), taking the namespace's daemons along.
# As the namespace's init it cannot be killed from inside. The program gets SIGPIPE and SIGXFSZ back at their
# default actions.
INNER_PARENT = r"""
import os, signal, sys
child = os.fork()
if child == 0:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
while True:
    pid, status = os.waitpid(-1, 0)
    if pid == child and os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    if pid == child and os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
"""
# Written inside the sandbox just before starting the program: absent marker = the sandbox failed to start.
# A command that cannot be found is the caller's set-up error, so it gets no marker either. The parent's
# source arrives as the shell's $0.
MARKER_SHELL = 'command -v "$1" >/dev/null 2>&1 && printf . >&3; exec 3>&-; exec python3 -I -S -c "$0" "$@"'
SANDBOX_UID = 65534  # "nobody" inside the namespace
WORK = "/work"
TMP_BYTES = 64 * 1024 * 1024


def bwrap_argv(workdir: Path, marker_fd: int, seccomp_fd: int, network: bool) -> list[str]:
    argv = [
        "python3",
        "-I",
        "-S",
        "-c",
        REAPER,
        str(marker_fd),
        "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        *system_view(),
        "--size",
        str(TMP_BYTES),
        "--tmpfs",
        "/tmp",
        "--bind",
        str(workdir),
        WORK,
        "--chdir",
        WORK,
        "--cap-drop",
        "ALL",
        "--seccomp",
        str(seccomp_fd),
    ]
    if supports("--disable-userns"):  # bubblewrap >= 0.8; the filter refuses new namespaces anyway
        argv.append("--disable-userns")
    if network:
        argv.insert(argv.index("--unshare-all") + 1, "--share-net")
    return argv + ["--", "/bin/sh", "-c", MARKER_SHELL, INNER_PARENT]


def _marker_written(read_fd: int) -> bool:
    os.set_blocking(read_fd, False)
    try:
        return bool(os.read(read_fd, 1))
    except BlockingIOError:
        return False
    finally:
        os.close(read_fd)


class SingleRunBwrapBackend(HostBackend):
    name = "bwrap"
    extra_processes = 3  # the reaper, bwrap's monitor and the namespace's init (the program's parent)
    memory_headroom = 64 * 1024 * 1024

    @classmethod
    def probe(cls) -> str | None:
        reason = unusable_reason()
        if reason is not None:
            return reason
        # As root, runs use an unprivileged uid (an unprivileged user namespace): probe exactly that.
        as_run_uid: dict[str, Any] = (
            {"user": RUN_UID_BASE, "group": RUN_UID_BASE, "extra_groups": []} if os.geteuid() == 0 else {}
        )
        try:
            result = subprocess.run(
                [
                    "bwrap",
                    "--unshare-all",
                    "--ro-bind",
                    "/usr",
                    "/usr",
                    "--symlink",
                    "usr/lib",
                    "/lib",
                    "--symlink",
                    "usr/lib64",
                    "/lib64",
                    "--symlink",
                    "usr/bin",
                    "/bin",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--",
                    "true",
                ],
                capture_output=True,
                timeout=20,
                cwd="/",
                **as_run_uid,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bwrap failed to start: {error}"
        if result.returncode != 0:
            return f"bwrap cannot create namespaces here: {result.stderr.decode(errors='replace').strip()}"
        return None

    def _supervise(
        self,
        program: Program,
        limits: Limits,
        workdir: HostWorkDir,
        identity: RunIdentity,
        cgroup_procs: tuple[str, ...],
    ) -> RawOutcome:
        marker_read, marker_write = os.pipe()
        seccomp_fd = filter_fd()
        try:
            # The reaper, bwrap's monitor and its init count against RLIMIT_NPROC too (extra_processes).
            raw = supervise(
                SpawnRequest.under(
                    limits,
                    bwrap_argv(workdir.path, marker_write, seccomp_fd, limits.network) + list(program.command),
                    cwd="/",
                    env=program_env(home=WORK, tmpdir="/tmp"),
                    stdin=program.stdin,
                    extra_processes=self.extra_processes,
                    uid=identity.uid,
                    gid=identity.gid,
                    pass_fds=(marker_write, seccomp_fd),
                    cgroup_procs=cgroup_procs,
                )
            )
        finally:
            os.close(marker_write)
            os.close(seccomp_fd)
        started = _marker_written(marker_read)
        if raw.spawn_error:
            return raw
        if not started:
            message = raw.stderr.decode("utf-8", "replace").strip()[-500:]
            raw.spawn_error = f"bwrap failed to set up the sandbox: {message or 'no status reported'}"
            return raw
        # bwrap reports a signal death of its child as exit code 128+N.
        if raw.exit_code is not None and 128 < raw.exit_code < 128 + 65:
            raw.signal, raw.exit_code = raw.exit_code - 128, None
        return raw
