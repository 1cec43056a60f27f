"""Name what happened: turn a supervisor's raw facts into an ExecResult with one status from the closed set."""

from __future__ import annotations

import signal

from verifarm.sandbox.program import ExecResult, Limits, Status
from verifarm.sandbox.supervisor import RawOutcome

# Messages a runtime prints when an rlimit refuses memory or file growth. They only refine the status of a
# run that already failed, so a program printing them gains nothing.
# Java's OutOfMemoryError matches "MemoryError"; Rust's allocator aborts with "memory allocation of N bytes failed".
_MEMORY_MARKERS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"std::bad_alloc",
    b"out of memory",
    b"memory allocation of ",
)
_FILE_SIZE_MARKERS = (b"File too large", b"[Errno 27]")


def classify(
    raw: RawOutcome, limits: Limits, backend: str, files: dict[str, bytes] | None = None, note: str = ""
) -> ExecResult:
    status, detail = _status(raw, limits)
    if note:
        detail = f"{detail}; {note}" if detail else note
    return ExecResult(
        status=status,
        exit_code=raw.exit_code,
        signal=raw.signal,
        stdout=raw.stdout,
        stderr=raw.stderr,
        truncated=raw.truncated,
        cpu_seconds=raw.cpu_seconds,
        wall_seconds=raw.wall_seconds,
        peak_memory_bytes=raw.peak_memory_bytes,
        backend=backend,
        detail=detail,
        files=files or {},
    )


def infra_error(backend: str, detail: str, wall_seconds: float = 0.0) -> ExecResult:
    return ExecResult(Status.INFRA_ERROR, None, None, b"", b"", False, 0.0, wall_seconds, 0, backend, detail)


def _status(raw: RawOutcome, limits: Limits) -> tuple[Status, str]:
    if raw.spawn_error:
        return Status.INFRA_ERROR, raw.spawn_error
    if raw.timed_out:
        return Status.TIMEOUT, f"wall clock limit of {limits.wall_seconds:g}s reached"
    cpu_exhausted = raw.cpu_seconds >= limits.cpu_seconds - 0.05
    if raw.signal == signal.SIGXCPU or (raw.signal == signal.SIGKILL and cpu_exhausted):
        return Status.TIMEOUT, f"CPU limit of {limits.cpu_seconds:g}s reached"
    if raw.truncated:
        return Status.OUTPUT_LIMIT, f"output passed {limits.output_bytes} bytes; truncated and stopped"
    if raw.signal == signal.SIGXFSZ:
        return Status.OUTPUT_LIMIT, f"a file passed the size limit of {limits.file_size_bytes} bytes"
    tail = raw.stderr[:1024] + raw.stderr[-4096:]  # Go states its fatal error first, then a long traceback
    failed = raw.signal is not None or (raw.exit_code or 0) != 0
    near_memory_cap = raw.peak_memory_bytes >= 0.9 * limits.memory_bytes
    if failed and (
        raw.memory_exceeded
        or any(marker in tail for marker in _MEMORY_MARKERS)
        or (raw.signal == signal.SIGKILL and near_memory_cap)
    ):
        return Status.MEMORY_LIMIT, f"memory limit of {limits.memory_bytes} bytes reached"
    if failed and any(marker in tail for marker in _FILE_SIZE_MARKERS):
        return Status.OUTPUT_LIMIT, f"a file passed the size limit of {limits.file_size_bytes} bytes"
    if raw.signal is not None:
        return (
            Status.KILLED,
            f"killed by signal {signal.Signals(raw.signal).name}"
            if raw.signal in signal.valid_signals()
            else f"killed by signal {raw.signal}",
        )
    if raw.exit_code:
        return Status.NONZERO_EXIT, f"exit code {raw.exit_code}"
    return Status.OK, ""
