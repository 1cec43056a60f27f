"""What a run's process takes on before the program starts (cgroup, rlimits, run uid), and how its parent
waits for it to end.

Standard library only, and light on purpose: the fork server imports it, and every module the fork server
holds is copied into each run it forks (fork and exit cost grows with the heap) and shows in the run's
sys.modules. Used by supervisor.py (between fork and exec) and zygote.py (in the forked child).
"""

import ctypes
import math
import os
import resource
import signal

PR_SET_PDEATHSIG = 1
SIGKILL = 9
# Loaded once here: a dlopen between fork and exec could deadlock on a loader lock held by another thread.
_LIBC = ctypes.CDLL(None, use_errno=True)


def apply_run_limits(
    cpu_seconds, memory_bytes, max_processes, file_size_bytes, open_files, uid=None, gid=None, cgroup_procs=()
):
    """Join the cgroup, set rlimits, drop to the run's uid (when given): in the child, before the program."""
    # A worker started in the background (`verifarm workers start &`) ignores SIGINT and SIGQUIT, under nohup
    # SIGHUP, and an ignored signal stays ignored across exec: every program starts with the dispositions a
    # foreground shell would give it. (A handler, such as the fork server's Python one, is left alone: exec
    # resets it, a forked run keeps it.)
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP):
        if signal.getsignal(number) == signal.SIG_IGN:
            signal.signal(number, signal.SIG_DFL)
    for procs in cgroup_procs:  # while still root: the cgroup files belong to root
        with open(procs, "w") as handle:
            handle.write(str(os.getpid()))
    try:  # first in line for the OOM killer, before the agent or anything of the host
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    cpu = max(1, math.ceil(cpu_seconds))
    # Soft limit sends SIGXCPU (catchable), the hard one a second later SIGKILL (not).
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    if uid is not None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    # After the uid change, which would clear it.
    _LIBC.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)


def wait_for_exit(pid):
    """Block until pid has exited or been killed: (wait status, CPU seconds, peak RSS bytes).

    A traced child reports each of its stops to its tracer's wait even without WUNTRACED (a program that
    calls ptrace(PTRACE_TRACEME) and stops itself); a stopped process is still running, so keep waiting.
    """
    while True:
        _, status, usage = os.wait4(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024
