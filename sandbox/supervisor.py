"""Spawn one command under rlimits in its own session, feed it, cap its output, time it, kill its whole tree.

Standard library only: the same file runs on the host (the process backend, bwrap without root) and,
bind-mounted read-only, inside the warm sandboxes (docker and bwrap) as the agent's engine. It reports raw
facts; `outcome.py` names them.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

try:
    from verifarm.sandbox.run_limits import apply_run_limits, wait_for_exit
except ImportError:  # inside a sandbox only this folder exists, mounted at /opt/verifarm
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from run_limits import apply_run_limits, wait_for_exit  # type: ignore[import-not-found, no-redef]
if TYPE_CHECKING:  # for annotations only: inside a sandbox this module has no package around it
    from verifarm.sandbox.program import Limits
_READ_CHUNK = 65536
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def program_env(home: str, tmpdir: str) -> dict[str, str]:
    """The only environment a program sees, on every backend: nothing of the host's."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


@dataclass
class SpawnRequest:
    """One command to run; limits are plain numbers so the request crosses the agent's socket as JSON."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    stdin: bytes
    cpu_seconds: float
    wall_seconds: float
    memory_bytes: int
    max_processes: int
    output_bytes: int
    file_size_bytes: int
    open_files: int
    uid: int | None = None  # drop to this uid/gid before exec (needs root)
    gid: int | None = None
    pass_fds: tuple[int, ...] = ()
    cgroup_procs: tuple[str, ...] = ()  # cgroup.procs files to join before exec (see cgroup.py)

    @classmethod
    def under(
        cls,
        limits: Limits,
        argv: list[str] | tuple[str, ...],
        cwd: str = "",
        env: dict[str, str] | None = None,
        stdin: bytes = b"",
        extra_processes: int = 0,
        **identity_and_fds,
    ) -> SpawnRequest:
        """A request that enforces limits; extra_processes are the backend's own processes in the run's tree,
        which count against RLIMIT_NPROC too. Where cwd, env and stdin are left empty the agent fills them in."""
        return cls(
            argv=list(argv),
            cwd=cwd,
            env=dict(env or {}),
            stdin=stdin,
            cpu_seconds=limits.cpu_seconds,
            wall_seconds=limits.wall_seconds,
            memory_bytes=limits.memory_bytes,
            max_processes=limits.max_processes + extra_processes,
            output_bytes=limits.output_bytes,
            file_size_bytes=limits.file_size_bytes,
            open_files=limits.open_files,
            **identity_and_fds,
        )


@dataclass
class RawOutcome:
    """What happened, without interpretation."""

    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool  # output went past output_bytes; the program was stopped there
    timed_out: bool  # the wall clock ran out
    cpu_seconds: float
    wall_seconds: float
    peak_memory_bytes: int
    spawn_error: str = ""  # the command could not be started: the sandbox's failure, not the program's
    memory_exceeded: bool = False  # the run's cgroup reported an out-of-memory kill
    extra: dict = field(default_factory=dict)

    def to_wire(self) -> dict:
        wire = asdict(self)
        wire["stdout"] = self.stdout.hex()
        wire["stderr"] = self.stderr.hex()
        return wire

    @classmethod
    def from_wire(cls, wire: dict) -> RawOutcome:
        wire = dict(wire)
        wire["stdout"] = bytes.fromhex(wire["stdout"])
        wire["stderr"] = bytes.fromhex(wire["stderr"])
        return cls(**wire)


def _limit_child(request: SpawnRequest) -> None:
    """Runs in the child between fork and exec: join the cgroup, set rlimits, drop to the run's uid."""
    apply_run_limits(
        request.cpu_seconds,
        request.memory_bytes,
        request.max_processes,
        request.file_size_bytes,
        request.open_files,
        request.uid,
        request.gid,
        request.cgroup_procs,
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Launched:
    """A started program: its pid (leader of its own session), our ends of its pipes, and how to reap it."""

    pid: int
    stdin_fd: int
    stdout_fd: int
    stderr_fd: int
    reap: Callable[[], tuple[int, float, int]]  # blocks: (wait status, CPU seconds, peak RSS bytes)
    pidfd: int | None = None  # opened by the launcher when the pid is not our child (fork server)


def popen_launch(request: SpawnRequest) -> Launched:
    """Start the command with fork+exec; raises OSError or SubprocessError when it cannot start."""
    proc = subprocess.Popen(
        request.argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=request.cwd,
        env=request.env,
        start_new_session=True,  # setsid: the program leads its own group, killed as a whole
        preexec_fn=lambda: _limit_child(request),
        pass_fds=request.pass_fds,
        close_fds=True,
    )
    # Our own fds from here on: the Popen object is dropped, we reap with wait4 for the rusage.
    pipes = [stream for stream in (proc.stdin, proc.stdout, proc.stderr) if stream is not None]  # all three: PIPE
    stdin_fd, stdout_fd, stderr_fd = (os.dup(stream.fileno()) for stream in pipes)
    for stream in pipes:
        stream.close()

    def reap() -> tuple[int, float, int]:
        status, cpu_seconds, peak_memory = wait_for_exit(proc.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return status, cpu_seconds, peak_memory

    return Launched(proc.pid, stdin_fd, stdout_fd, stderr_fd, reap)


def supervise(request: SpawnRequest, launch: Callable[[SpawnRequest], Launched] = popen_launch) -> RawOutcome:
    """Run the command to completion, timeout or output cap; never raises for the program's behaviour."""
    started = time.monotonic()
    try:
        launched = launch(request)
    except (OSError, subprocess.SubprocessError) as error:
        return RawOutcome(
            None,
            None,
            b"",
            b"",
            False,
            False,
            0.0,
            time.monotonic() - started,
            0,
            spawn_error=f"could not start {request.argv[0]!r}: {error}",
        )
    try:
        return _watch(launched, request, started)
    finally:
        for fd in (launched.stdin_fd, launched.stdout_fd, launched.stderr_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _watch(launched: Launched, request: SpawnRequest, started: float) -> RawOutcome:
    deadline = started + request.wall_seconds
    stdout_fd, stderr_fd, stdin_fd = launched.stdout_fd, launched.stderr_fd, launched.stdin_fd
    out = {stdout_fd: bytearray(), stderr_fd: bytearray()}
    budget = request.output_bytes
    truncated = timed_out = False
    pidfd = launched.pidfd if launched.pidfd is not None else os.pidfd_open(launched.pid)
    selector = selectors.DefaultSelector()
    try:
        for fd in (stdout_fd, stderr_fd):
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        pending_stdin = memoryview(request.stdin)
        stdin_open = True
        if pending_stdin:
            os.set_blocking(stdin_fd, False)
            selector.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            os.close(stdin_fd)
            stdin_open = False
        selector.register(pidfd, selectors.EVENT_READ)
        exited = False
        while not exited and not truncated:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                fd = key.fd
                if fd == pidfd:
                    exited = True
                elif fd == stdin_fd and stdin_open:
                    try:
                        written = os.write(fd, pending_stdin[:_READ_CHUNK])
                        pending_stdin = pending_stdin[written:]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending_stdin = pending_stdin[:0]
                    if not pending_stdin:
                        selector.unregister(fd)
                        os.close(fd)
                        stdin_open = False
                else:
                    truncated = _drain(fd, out[fd], out, budget, selector) or truncated
        # The leader is gone, timed out or flooded: stop every process of its group, then take what
        # the pipes still hold without waiting for a daemon that kept them open.
        _kill_group(launched.pid)
        for fd in list(out):
            if not truncated:
                truncated = _drain(fd, out[fd], out, budget, None, final=True) or truncated
        status, cpu_seconds, peak_memory = launched.reap()
        _kill_group(launched.pid)
    finally:
        selector.close()
        os.close(pidfd)
        if stdin_open:
            os.close(stdin_fd)
        launched.stdin_fd = -1  # closed here; supervise() must not close a reused number
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    return RawOutcome(
        exit_code=exit_code,
        signal=term_signal,
        stdout=bytes(out[stdout_fd]),
        stderr=bytes(out[stderr_fd]),
        truncated=truncated,
        timed_out=timed_out,
        cpu_seconds=cpu_seconds,
        wall_seconds=time.monotonic() - started,
        peak_memory_bytes=peak_memory,
    )


def _drain(fd: int, sink: bytearray, all_out: dict, budget: int, selector, final: bool = False) -> bool:
    """Read what is available from fd into sink; True when total output passed the budget."""
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            if selector is not None:
                selector.unregister(fd)
            return False
        used = sum(len(buffer) for buffer in all_out.values())
        room = budget - used
        sink.extend(chunk[: max(room, 0)])
        if len(chunk) > room:
            return True
        if not final:
            return False
