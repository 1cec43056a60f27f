"""The syscall filter of the isolated backends: what Docker's default profile refuses fails with EPERM
inside every isolated sandbox (clone3 with ENOSYS, so the C library falls back to a clone it can inspect),
nested user namespaces included, and ptrace cannot attach to a process that is not the caller's child."""

from __future__ import annotations

import json
import platform

import pytest

from verifarm.sandbox import Limits, Program, Status, get_backend
from verifarm.sandbox.bwrap_single import SingleRunBwrapBackend
from verifarm.sandbox.seccomp import compiled_filter, docker_profile, rules
from verifarm.sandbox.selection import probe_backend

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="syscall numbers below are x86_64's")

EPERM, ENOSYS = 1, 38
# name: (syscall number, arguments). Chosen so a call the filter let through would do no harm; the first
# group succeeds for an unprivileged process when no filter stops it (so a pass proves the filter works).
CALLS = {
    "unshare_user_namespace": (272, (0x10000000,)),  # CLONE_NEWUSER: a nested user namespace
    "unshare_mount_namespace": (272, (0x00020000,)),
    "clone_new_user_namespace": (56, (0x10000000 | 17, 0, 0, 0, 0)),  # CLONE_NEWUSER | SIGCHLD
    "keyctl_session_keyring": (250, (0, 2**64 - 3, 1)),  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
    "add_key": (248, (b"user", b"verifarm", b"x", 1, 2**64 - 3)),
    "personality_no_aslr": (135, (0x0040000,)),  # ADDR_NO_RANDOMIZE
    "ptrace_attach_parent": None,  # attach to the run's own main process: a non-child (filled in below)
    "ptrace_attach_pid_1": (101, (16, 1, 0, 0)),
    "ptrace_seize_pid_1": (101, (0x4206, 1, 0, 0)),
    "mount_tmpfs": (165, (b"none", b"/tmp", b"tmpfs", 0, 0)),
    "umount_proc": (166, (b"/proc", 2)),
    "setns_uts": None,  # setns on the sandbox's own uts namespace file (filled in below)
    "bpf_map_create": (321, (0, 0, 0)),
    "perf_event_open": (298, (0, 0, -1, -1, 0)),
    "kexec_load": (246, (0, 0, 0, 0)),
    "kexec_file_load": (320, (-1, -1, 0, 0, 0)),
    "init_module": (175, (0, 0, b"")),
    "finit_module": (313, (-1, b"", 0)),
    "delete_module": (176, (b"verifarm", 0)),
    "reboot_cad_off": (169, (0xFEE1DEAD, 672274793, 0)),
    "open_by_handle_at": (304, (-1, 0, 0)),
    "pivot_root": (155, (b"/tmp", b"/tmp")),
    "chroot": (161, (b"/tmp",)),
    "swapon": (167, (b"/tmp/none", 0)),
    "syslog_read": (103, (3, 0, 0)),
    "acct": (163, (0,)),
    "iopl": (172, (3,)),
    "settimeofday": (164, (0, 0)),
    "userfaultfd": (323, (0,)),
    "vsock_socket": (41, (40, 1, 0)),  # AF_VSOCK, SOCK_STREAM
    "clone3": (435, (0, 0)),
}
EXPECTED = {name: ENOSYS if name == "clone3" else EPERM for name in CALLS}

PROBE = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
calls = json.loads(sys.argv[1])
parent = os.getpid()
child = os.fork()
if child == 0:  # a process of the run that is not the parent's child: it tries to attach to the parent
    ctypes.set_errno(0)
    rc = libc.syscall(101, 16, parent, 0, 0)
    os.write(1, json.dumps([rc, ctypes.get_errno()]).encode() + b"\\n")
    os._exit(0)
os.waitpid(child, 0)
uts = os.open('/proc/self/ns/uts', os.O_RDONLY)
calls["setns_uts"] = [308, [uts, 0x04000000]]
results = {}
for name, (number, args) in calls.items():
    args = [a.encode('latin-1') if isinstance(a, str) else ctypes.c_ulong(a % 2**64) for a in args]
    ctypes.set_errno(0)
    rc = libc.syscall(number, *args)
    if rc == 0 and name.startswith("clone"):
        os._exit(0)  # a clone that went through: the copy leaves at once
    results[name] = [rc, ctypes.get_errno()]
print(json.dumps(results))
"""


def _probe_program() -> Program:
    calls = {
        name: [number, [arg.decode("latin-1") if isinstance(arg, bytes) else arg for arg in args]]
        for name, entry in CALLS.items()
        if entry is not None
        for number, args in [entry]
    }
    return Program(("python3", "-I", "-S", "probe.py", json.dumps(calls)), files={"probe.py": PROBE})


def _isolated_backends():
    params = []
    for name in ("docker", "bwrap"):
        params.append(pytest.param(name, id=name, marks=[pytest.mark.docker] if name == "docker" else []))
    params.append(pytest.param("bwrap-single-run", id="bwrap-single-run"))
    return params


def _backend(name: str):
    if name == "bwrap-single-run":
        reason = SingleRunBwrapBackend.probe()
        if reason:
            pytest.skip(f"single-run bwrap unavailable: {reason}")
        return SingleRunBwrapBackend()
    reason = probe_backend(name)
    if reason:
        pytest.skip(f"{name} backend unavailable: {reason}")
    return get_backend(name)


@pytest.mark.parametrize("name", _isolated_backends())
def test_refused_syscalls_fail_with_eperm(name: str):
    result = _backend(name).run(_probe_program(), Limits(wall_seconds=20))
    assert result.status is Status.OK, (result.status, result.detail, result.stderr[-500:])
    lines = result.stdout.decode().splitlines()
    attach_parent = json.loads(lines[0])
    outcomes = {name: tuple(value) for name, value in json.loads(lines[1]).items()}
    outcomes["ptrace_attach_parent"] = tuple(attach_parent)
    wanted = {name: (-1, number) for name, number in EXPECTED.items()}
    assert outcomes == wanted


def test_the_filter_is_docker_default_profile_and_compiles():
    """The allowed set is Docker's; nothing that profile refuses (for a container without capabilities)
    is allowed here, and both compilations of the one rule table exist."""
    allowed = {name for rule in rules() if rule.errno is None for name in rule.names}
    for refused in (
        "unshare",
        "setns",
        "mount",
        "umount2",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "reboot",
        "open_by_handle_at",
        "pivot_root",
        "chroot",
        "swapon",
        "swapoff",
        "syslog",
        "acct",
        "iopl",
        "ioperm",
        "settimeofday",
        "clock_settime",
        "userfaultfd",
        "fsopen",
        "fsmount",
        "move_mount",
        "open_tree",
        "lookup_dcookie",
        "quotactl",
        "sethostname",
        "setdomainname",
        "vhangup",
        "clone3",
    ):
        assert refused not in allowed, refused
    # Conditional rules only narrow a call: clone without namespace flags, socket but AF_VSOCK, ptrace but attach.
    conditional = {name for rule in rules() if rule.compare is not None for name in rule.names}
    assert conditional == {"clone", "socket", "personality", "ptrace"}
    assert len(compiled_filter()) % 8 == 0 and len(compiled_filter()) > 100
    profile = json.loads(docker_profile())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == EPERM
