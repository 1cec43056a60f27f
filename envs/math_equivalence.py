"""Answer equivalence with math-verify, run in a child process so it works from any thread and can be killed.

math-verify's own timeout uses ``signal.alarm``, which only works in a main thread, and a hostile answer such as
``9^{9^{9^9}}`` spends its time inside C code where no signal handler runs. So every check goes to a long-lived
child process (its main thread uses math-verify's timeouts; memory is capped), and the parent enforces a hard wall
deadline on the reply: a child that misses it is killed and replaced on the next check.

Run as ``python -m verifarm.envs.math_equivalence`` it is that child: JSON lines in on stdin, JSON lines out.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass

# Virtual memory cap for the child: sympy plus math-verify need a few hundred MiB; this stops a blow-up answer.
CHILD_MEMORY_BYTES = 3 * 1024**3
STARTUP_SECONDS = 120.0


@dataclass(frozen=True)
class Equivalence:
    equivalent: bool
    timed_out: bool = False
    infra_error: bool = False
    detail: str = ""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


class MathEquivalenceChecker:
    """Thread-safe; one child process per checker, started on first use, stopped by ``close()``."""

    def __init__(self, timeout_seconds: int = 5) -> None:
        if not isinstance(timeout_seconds, int) or timeout_seconds < 1:
            raise ValueError(f"timeout_seconds must be a positive integer (math-verify uses whole seconds), "
                             f"got {timeout_seconds!r}")
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._buffer = b""

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "verifarm.envs.math_equivalence"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self._process, self._buffer = process, b""
        self._finalizer = weakref.finalize(self, _stop, process)
        ready = self._read_line(time.monotonic() + STARTUP_SECONDS)
        if ready != {"ready": True}:
            self._kill()
            raise RuntimeError(f"math-verify child did not start: {ready!r}")
        return process

    def _kill(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # kills and reaps the child; idempotent
        self._process, self._finalizer, self._buffer = None, None, b""

    def _read_line(self, deadline: float) -> dict | None:
        """One JSON reply, or None on deadline or EOF."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def check(self, gold: str, answer: str) -> Equivalence:
        """Whether ``answer`` (LaTeX or plain math) equals ``gold``."""
        request = json.dumps({"gold": gold, "answer": answer, "timeout": self.timeout_seconds}) + "\n"
        with self._lock:
            try:
                process = self._process if self._process is not None and self._process.poll() is None \
                    else self._start()
                assert process.stdin is not None
                process.stdin.write(request.encode())
                process.stdin.flush()
            except (OSError, RuntimeError) as error:
                self._kill()
                return Equivalence(False, infra_error=True, detail=f"math-verify child failed: {error}")
            # Gold and answer are parsed and then compared, each step under math-verify's own timeout.
            deadline = time.monotonic() + 3 * self.timeout_seconds + 2.0
            reply = self._read_line(deadline)
            if reply is None:
                died = process.poll() is not None
                self._kill()
                if died:
                    return Equivalence(False, infra_error=True, detail="math-verify child died")
                return Equivalence(False, timed_out=True, detail="equivalence check timed out")
        if "gold_error" in reply:  # our generator's fault, never the completion's
            return Equivalence(False, infra_error=True, detail=str(reply["gold_error"]))
        if "error" in reply:
            return Equivalence(False, detail=str(reply["error"])[:200])
        return Equivalence(bool(reply["equivalent"]), timed_out=bool(reply.get("timed_out")),
                           detail=str(reply.get("parsed", ""))[:200])

    def close(self) -> None:
        with self._lock:
            self._kill()


def _parse(text: str, timeout: int) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    # Answers are a line of math: read as LaTeX first ("2x+1" as an expression, not "2"), then as plain text.
    parsed = parse(f"${text}$", extraction_config=config, parsing_timeout=timeout)
    return parsed or parse(text, extraction_config=config, parsing_timeout=timeout)


def _is_answer_form(value: object) -> bool:
    """A value, or an assignment to one symbol (``x = 3``); ``4 = 3`` or ``x < 4`` are not answers.

    math-verify compares only the right side of an equation, so without this ``anything = gold`` would pass.
    """
    from sympy import Symbol
    from sympy.core.relational import Equality, Relational

    if isinstance(value, Relational):
        return isinstance(value, Equality) and isinstance(value.lhs, Symbol)
    return True


def _serve() -> None:
    import resource

    try:  # die with the parent even while stuck in a computation
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from math_verify import verify

    protocol.write(json.dumps({"ready": True}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            timeout = int(request["timeout"])
            gold, answer = _parse(request["gold"], timeout), _parse(request["answer"], timeout)
            if not gold:
                reply = {"gold_error": "the gold answer did not parse"}
            elif not answer:
                reply = {"equivalent": False, "parsed": "answer did not parse"}
            elif not _is_answer_form(answer[0]):
                reply = {"equivalent": False, "parsed": f"{answer[-1]} is a relation, not a value"}
            else:
                reply = {"equivalent": bool(verify(gold, answer, timeout_seconds=timeout)),
                         "parsed": f"{gold[-1]} vs {answer[-1]}"}
        except (Exception, MemoryError, RecursionError) as error:  # noqa: BLE001  (a bad answer, never a crash)
            reply = {"error": f"{type(error).__name__}: {error}"}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    _serve()
