"""The syscall filter of the isolated backends: Docker's default seccomp profile, as one rule table compiled
to BPF with libseccomp for bwrap sandboxes and written in Docker's profile format for containers.

Docker's profile (moby `profiles/seccomp/default.json`) allows a list of ordinary syscalls and answers every
other one with EPERM; the rules that depend on capabilities are taken as for a container holding none of
CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_SYS_BOOT, ... (ours never do). So `unshare`, `setns`,
`mount`, `keyctl`, `bpf`, `perf_event_open`, `kexec_load`, `init_module`, `reboot`, `open_by_handle_at` fail
with EPERM, `clone` may not create namespaces, and `clone3` answers ENOSYS so the C library falls back to
`clone`, whose flags the filter can see. One rule is stricter than Docker's: `ptrace` may not attach to a
process (PTRACE_ATTACH, PTRACE_SEIZE); a run can still trace its own children (PTRACE_TRACEME).
In the BPF for bwrap, syscalls of other ABIs on the same CPU (32-bit `int 0x80`) kill the process: only
the native ABI is allowed.

libseccomp is reached through ctypes (its C API: `seccomp_init`, `seccomp_rule_add_array`,
`seccomp_export_bpf`); bubblewrap loads the exported program with `--seccomp FD`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import json
import os
import tempfile
from dataclasses import dataclass

# Allowed unconditionally: the first rule of Docker's default profile (names unknown on this architecture
# or to this libseccomp are skipped; they cannot be called here anyway).
# fmt: off
ALLOWED = [
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod", "chown",
    "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit",
    "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir",
    "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync",
    "ftruncate", "ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents",
    "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname",
    "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create",
    "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
    "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
    "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair",
    "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
    "waitpid", "write", "writev", "process_vm_readv", "process_vm_writev", "arch_prctl", "modify_ldt",
]
# fmt: on
AF_VSOCK = 40
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)  # Linux, its 32-bit-uid variants, query
# clone may not create namespaces: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET, as in Docker.
CLONE_NAMESPACE_FLAGS = 0x7E020000
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
# Every ptrace request but the two that attach to another process. One rule per value: libseccomp takes one
# comparison per argument and rule, and refuses a rule whose action is the default one (EPERM).
PTRACE_REQUESTS = tuple(
    request for request in (*range(34), *range(0x4200, 0x4212)) if request not in (PTRACE_ATTACH, PTRACE_SEIZE)
)

SCMP_ACT_ALLOW = 0x7FFF0000
COMPARISONS = {"SCMP_CMP_NE": 1, "SCMP_CMP_EQ": 4, "SCMP_CMP_MASKED_EQ": 7}
_NR_SCMP_ERROR = -1


@dataclass(frozen=True)
class Rule:
    """Syscalls answered with one action when the (optional) comparison on their first argument holds.
    errno None: allowed; else the call fails with that errno."""

    names: tuple[str, ...]
    errno: int | None = None
    compare: tuple[str, int, int] | None = None  # (operation, value, mask/second value)


def rules() -> list[Rule]:
    """The filter as data; everything not matched fails with EPERM."""
    table = [
        Rule(tuple(ALLOWED)),
        Rule(("socket",), compare=("SCMP_CMP_NE", AF_VSOCK, 0)),
        Rule(("clone",), compare=("SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, 0)),
        Rule(("clone3",), errno=errno.ENOSYS),
    ]
    table += [Rule(("personality",), compare=("SCMP_CMP_EQ", persona, 0)) for persona in PERSONALITIES]
    table += [Rule(("ptrace",), compare=("SCMP_CMP_EQ", request, 0)) for request in PTRACE_REQUESTS]
    return table


def _errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


class _ArgCompare(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class SeccompUnavailable(RuntimeError):
    """libseccomp is missing or refused the filter."""


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        library = ctypes.CDLL(name, use_errno=True)
    except OSError as error:
        raise SeccompUnavailable(f"libseccomp is not installed ({error}); install libseccomp2") from None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCompare),
    ]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return library


@functools.lru_cache(maxsize=1)
def compiled_filter() -> bytes:
    """The filter as classic BPF for the native architecture (what `bwrap --seccomp` loads), built once."""
    library = _library()
    context = library.seccomp_init(_errno_action(errno.EPERM))
    if not context:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        for rule in rules():
            action = SCMP_ACT_ALLOW if rule.errno is None else _errno_action(rule.errno)
            compares = (
                []
                if rule.compare is None
                else [_ArgCompare(0, COMPARISONS[rule.compare[0]], rule.compare[1], rule.compare[2])]
            )
            array = (_ArgCompare * max(1, len(compares)))(*compares)
            for name in rule.names:
                number = library.seccomp_syscall_resolve_name(name.encode())
                if number == _NR_SCMP_ERROR or number < 0:  # unknown here, or not of this architecture
                    continue
                result = library.seccomp_rule_add_array(context, action, number, len(compares), array)
                if result < 0:
                    raise SeccompUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-result)}")
        with tempfile.TemporaryFile() as handle:
            result = library.seccomp_export_bpf(context, handle.fileno())
            if result < 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-result)}")
            handle.seek(0)
            program = handle.read()
    finally:
        library.seccomp_release(context)
    if not program or len(program) % 8:
        raise SeccompUnavailable("libseccomp exported an empty or malformed filter")
    return program


def docker_profile() -> str:
    """The same filter in Docker's profile format, for `security_opt=["seccomp=<profile>"]`, so containers
    and bwrap sandboxes refuse exactly the same calls (Docker's own default lets ptrace attach)."""
    syscalls = []
    for rule in rules():
        entry: dict = {
            "names": list(rule.names),
            "action": "SCMP_ACT_ALLOW" if rule.errno is None else "SCMP_ACT_ERRNO",
        }
        if rule.errno is not None:
            entry["errnoRet"] = rule.errno
        if rule.compare is not None:
            operation, value, second = rule.compare
            entry["args"] = [{"index": 0, "value": value, "valueTwo": second, "op": operation}]
        syscalls.append(entry)
    return json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM, "syscalls": syscalls})


def filter_fd() -> int:
    """A readable fd holding the filter, for `bwrap --seccomp FD` (bwrap reads it to the end); the caller
    closes it once bwrap has started."""
    program = compiled_filter()
    read_fd, write_fd = os.pipe()
    try:
        if len(program) > 65536:  # a pipe holds 64 KiB; the filter is a few KiB
            raise SeccompUnavailable(f"the filter is unexpectedly large ({len(program)} bytes)")
        os.write(write_fd, program)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd
