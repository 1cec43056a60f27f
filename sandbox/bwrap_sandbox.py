"""What every bwrap sandbox of ours is made of: the read-only system view, the syscall filter, the flags.

Both bwrap backends (the warm pool when we are root, one sandbox per run otherwise) build their command
lines from these pieces, so they cannot drift apart in what a program sees or may call.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from verifarm.sandbox.languages import host_system_paths
from verifarm.sandbox.seccomp import SeccompUnavailable, filter_fd


def system_view() -> list[str]:
    """/usr read-only (with the usual top-level symlinks into it), the loader cache, the few /etc folders the
    language table names, a private /proc and a minimal /dev. Nothing else of the host is visible."""
    argv = [
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ]
    if supports("--perms"):  # bubblewrap >= 0.5: /etc traversable by the run's uid (node reads openssl.cnf)
        argv += ["--perms", "0755", "--dir", "/etc"]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for path in host_system_paths():  # what a language's toolchain reads outside /usr (the JDK's jvm.cfg)
        argv += ["--ro-bind", path, path]
    return argv


@functools.lru_cache(maxsize=1)
def _help_text() -> str:
    try:
        return subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def supports(flag: str) -> bool:
    """Whether the installed bubblewrap knows flag (e.g. --disable-userns, new in 0.8)."""
    return flag in _help_text().split()


def unusable_reason() -> str | None:
    """Why bwrap sandboxes cannot be built here (not installed, no libseccomp), or None."""
    if shutil.which("bwrap") is None:
        return "bwrap is not installed"
    if not supports("--seccomp"):
        return "this bubblewrap cannot load a seccomp filter (--seccomp)"
    try:
        os.close(filter_fd())
    except SeccompUnavailable as error:
        return str(error)
    return None
