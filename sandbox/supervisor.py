"""Spawn one command under rlimits in its own session, feed it, cap its output, time it, kill its whole tree.

Standard library only: the same file runs on the host (process and bwrap backends) and, bind-mounted
read-only, inside the docker sandbox as the agent's engine. It reports raw facts; `outcome.py` names them.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import selectors
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field

PR_SET_PDEATHSIG = 1
_READ_CHUNK = 65536


@dataclass
class SpawnRequest:
    """One command to run; limits are plain numbers so the request crosses the docker socket as JSON."""

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
    """Runs in the child between fork and exec (after the uid drop): rlimits and parent-death signal."""
    cpu = max(1, math.ceil(request.cpu_seconds))
    # Soft limit sends SIGXCPU (catchable), the hard one a second later SIGKILL (not).
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (request.memory_bytes, request.memory_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (request.max_processes, request.max_processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (request.file_size_bytes, request.file_size_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (request.open_files, request.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def supervise(request: SpawnRequest) -> RawOutcome:
    """Run the command to completion, timeout or output cap; never raises for the program's behaviour."""
    started = time.monotonic()
    user_kwargs: dict = {}
    if request.uid is not None:
        user_kwargs = {"user": request.uid, "group": request.gid, "extra_groups": []}
    try:
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
            **user_kwargs,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return RawOutcome(None, None, b"", b"", False, False, 0.0, time.monotonic() - started, 0,
                          spawn_error=f"could not start {request.argv[0]!r}: {error}")

    deadline = started + request.wall_seconds
    stdout_fd, stderr_fd = proc.stdout.fileno(), proc.stderr.fileno()
    out = {stdout_fd: bytearray(), stderr_fd: bytearray()}
    budget = request.output_bytes
    truncated = timed_out = False
    pidfd = os.pidfd_open(proc.pid)
    selector = selectors.DefaultSelector()
    try:
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream.fileno(), selectors.EVENT_READ)
        pending_stdin = memoryview(request.stdin)
        stdin_fd = proc.stdin.fileno()
        if pending_stdin:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
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
                elif fd == stdin_fd:
                    try:
                        written = os.write(fd, pending_stdin[:_READ_CHUNK])
                        pending_stdin = pending_stdin[written:]
                    except (BrokenPipeError, BlockingIOError) as error:
                        if isinstance(error, BlockingIOError):
                            continue
                        pending_stdin = pending_stdin[:0]
                    if not pending_stdin:
                        selector.unregister(fd)
                        proc.stdin.close()
                else:
                    truncated = _drain(fd, out[fd], out, budget, selector) or truncated
        # The leader is gone, timed out or flooded: stop every process of its group, then take what
        # the pipes still hold without waiting for a daemon that kept them open.
        _kill_group(proc.pid)
        for fd in list(out):
            if not truncated:
                truncated = _drain(fd, out[fd], out, budget, None, final=True) or truncated
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_group(proc.pid)
    finally:
        selector.close()
        os.close(pidfd)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    return RawOutcome(
        exit_code=exit_code,
        signal=term_signal,
        stdout=bytes(out[stdout_fd]),
        stderr=bytes(out[stderr_fd]),
        truncated=truncated,
        timed_out=timed_out,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=time.monotonic() - started,
        peak_memory_bytes=usage.ru_maxrss * 1024,
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
