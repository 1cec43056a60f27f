"""A killable, de-privileged child process for third-party scorers that parse or evaluate a completion's text.

math-verify and several reasoning-gym scorers hand the answer to sympy's ``parse_expr`` or to ``eval``, so a hostile
answer can run code or compute forever. They run here instead: a long-lived child that builds its scorer first
(imports, data files, a warm-up call), then hardens itself before it reads the first answer (no new processes, no
file writes, a memory cap, death with the parent; when started as root also a private network namespace, an empty
chroot and the ``nobody`` user), and serves requests one at a time. The parent enforces a wall deadline on every
reply and kills and replaces a child that misses it, so it works from any thread.

The lockdown must not change what the scorer computes: libraries known to import modules on first use (sympy) have
those modules imported before it (``LAZY_PACKAGES``), and an import still attempted after it (which the empty chroot
cannot supply) is reported as a failure of the scorer, not passed off as its reply,
and the child's stderr (where a library in trouble writes, and Python its tracebacks) comes back with every reply
and with every failure, so callers can tell "the scorer said no" from "the scorer broke". Python warnings are
silenced in the child: they are notices about library versions, not about the answer.

With ``fork_per_request`` the child never runs a request itself: it forks per request, and the fork (first denied
new processes, like an unforked child, and given nothing of the request stream or of the real reply pipe) scores it,
writes one reply into a pipe of its own and exits. Whatever a request did to the fork's memory (a rewritten scorer,
patched builtins, changed globals) dies with it, so no request can change the reply to another; the child enforces the
request's deadline on the fork and stays warm (a fork that outlives it is a timeout; one that dies without a reply
or is found stopped by a signal is a failure). Forks share the child's user, so the child is made non-dumpable
(they cannot ptrace it). A fork costs a few milliseconds (page tables of a warm, imports-heavy process, and its exit).

Requests go parent -> child as length-prefixed pickles (the parent is trusted); replies come back as JSON lines, so a
compromised child can only ever send data. Run as ``python -m verifarm.envs.scoring_process MODULE:FACTORY JSON``:
``FACTORY(**JSON)`` returns the handler ``request dict -> reply dict``; ``--fork-per-request`` after them
selects the mode above.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

CHILD_MEMORY_BYTES = 3 * 1024**3
NOBODY = 65534
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
CLONE_NEWNET = 0x40000000
EMPTY_ROOT = "/tmp/verifarm-empty-root"
STDERR_TAIL_BYTES = 4096
FAILURE_KEY = "__scorer_failure__"  # a reply the child's serving loop (not the scorer) sends when the scorer broke
TIMEOUT_KEY = "__scorer_timeout__"  # a reply the forking child sends when it killed a fork at the request's deadline
FORK_DEADLINE_GRACE_SECONDS = 10.0  # how much longer than the request's deadline the parent waits on a forking child
MAX_REPLY_BYTES = 1024 * 1024

# Libraries that import modules on first use (sympy loads set handlers, solvers, assumption handlers... only when an
# answer needs them): when a scorer has imported the library, these packages of it are imported whole before the
# lockdown, so that no answer meets an import the empty chroot cannot serve. Top-level name -> packages.
LAZY_PACKAGES: dict[str, tuple[str, ...]] = {
    "sympy": (
        "sympy.core",
        "sympy.sets",
        "sympy.solvers",
        "sympy.simplify",
        "sympy.assumptions",
        "sympy.calculus",
        "sympy.logic",
        "sympy.integrals",
        "sympy.concrete",
        "sympy.functions",
        "sympy.polys",
        "sympy.series",
        "sympy.matrices",
        "sympy.ntheory",
        "sympy.printing",
        "sympy.strategies",
        "sympy.tensor",
        "sympy.utilities",
    ),
    "latex2sympy2_extended": ("latex2sympy2_extended",),
    "antlr4": ("antlr4",),
}
SKIPPED_MODULE_PARTS = (
    ".tests",
    ".benchmarks",
    "sympy.core.compatibility",
    "sympy.core.trace",
    "sympy.utilities.pytest",
    "sympy.utilities.runtests",
    "sympy.utilities.randtest",
    "sympy.utilities.tmpfiles",
    "sympy.printing.preview",
    "sympy.utilities._compilation",
    "sympy.utilities.autowrap",
    "sympy.printing.tree",
    # printers for other libraries import them (torch alone takes seconds and hundreds of MB)
    "sympy.printing.pytorch",
    "sympy.printing.tensorflow",
    "sympy.printing.aesaracode",
    "sympy.printing.theanocode",
    "sympy.printing.llvmjitcode",
    # scripts that print documentation tables
    "hyperexpand_doc",
    "meijerint_doc",
)


@dataclass(frozen=True)
class Reply:
    status: str  # "ok", "timeout" (the child missed the deadline and was killed) or "failed" (it died, never
    # started, or reported that the scorer broke, e.g. an import after the lockdown)
    body: dict[str, Any]
    stderr: str = ""  # what the child wrote to stderr while serving this request (or before it failed)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class ScoringProcess:
    """Thread-safe handle on one child; started on first use, replaced after a kill, stopped by ``close()``."""

    def __init__(
        self, factory: str, options: dict[str, Any], startup_seconds: float = 180.0, fork_per_request: bool = False
    ) -> None:
        self.factory = factory
        self.options = options
        self.startup_seconds = startup_seconds
        self.fork_per_request = fork_per_request
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._buffer = b""
        self._stderr = b""
        self._closed_output = False  # the child closed its end of the reply pipe (it is dying or dead)
        self._spawner: ThreadPoolExecutor | None = None

    def _start(self) -> subprocess.Popen:
        # The child dies with the thread that started it (PR_SET_PDEATHSIG), so it is started from this object's
        # own long-lived thread, never from a caller's thread that may end while others still use the child.
        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scorer-spawner")
        process = self._spawner.submit(
            subprocess.Popen,
            [sys.executable, "-m", "verifarm.envs.scoring_process", self.factory, json.dumps(self.options)]
            + (["--fork-per-request"] if self.fork_per_request else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ).result()
        assert process.stderr is not None
        os.set_blocking(process.stderr.fileno(), False)
        self._process, self._buffer, self._stderr = process, b"", b""
        self._finalizer = weakref.finalize(self, _stop, process)
        ready = self._read_line(time.monotonic() + self.startup_seconds)
        if ready != {"ready": True}:
            self._drain_stderr()
            stderr = self._stderr.decode("utf-8", "replace").strip()[-1000:]
            self._kill()
            raise RuntimeError(f"scorer child {self.factory} did not start: {ready!r}; stderr: {stderr or '(empty)'}")
        self._stderr = b""  # start-up chatter is not any request's trouble
        return process

    def _drain_stderr(self) -> bool:
        """Moves what the child has written to stderr so far into a bounded tail (a full pipe would block it);
        False once the child has closed its stderr."""
        if self._process is None or self._process.stderr is None:
            return False
        while True:
            try:
                chunk = os.read(self._process.stderr.fileno(), 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self._stderr = (self._stderr + chunk)[-STDERR_TAIL_BYTES:]

    def _kill(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # kills and reaps the child; idempotent
        self._process, self._finalizer, self._buffer, self._stderr = None, None, b"", b""

    def _read_line(self, deadline: float) -> dict | None:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        watched = [fd] + ([self._process.stderr.fileno()] if self._process.stderr is not None else [])
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select(watched, [], [], remaining)
            if not readable:
                return None
            if fd not in readable:
                if not self._drain_stderr():  # closed: stop watching it, or select would wake at once forever
                    watched = [fd]
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._closed_output = True
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_REPLY_BYTES:  # a reply is a few hundred bytes; anything else is an attack
                return None
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    def call(self, request: dict[str, Any], wall_seconds: float) -> Reply:
        payload = pickle.dumps({"request": request, "wall_seconds": wall_seconds}, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            try:
                process = self._process if self._process is not None and self._process.poll() is None else self._start()
                assert process.stdin is not None
                self._drain_stderr()
                self._stderr, self._closed_output = b"", False
                process.stdin.write(struct.pack(">I", len(payload)) + payload)
                process.stdin.flush()
            except (OSError, RuntimeError) as error:
                stderr = self._stderr.decode("utf-8", "replace")
                self._kill()
                return Reply("failed", {"error": f"scorer child failed: {error}"}, stderr)
            # A forking child enforces the deadline on its fork itself and says so; the parent waits a little longer
            # and counts a child that still says nothing as broken (stopped by a signal, say), not as a slow answer.
            backstop = wall_seconds + FORK_DEADLINE_GRACE_SECONDS if self.fork_per_request else wall_seconds
            reply = self._read_line(time.monotonic() + backstop)
            self._drain_stderr()  # the child flushes stderr before it replies, so this request's output is here
            stderr = self._stderr.decode("utf-8", "replace")
            if reply is None:
                died: int | str | None = process.poll()
                if died is None and self._closed_output:  # exiting: its exit status is a moment away
                    try:
                        died = process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        died = "unknown, it closed its output"
                self._drain_stderr()
                stderr = self._stderr.decode("utf-8", "replace")
                self._kill()
                if died is not None:
                    return Reply("failed", {"error": f"scorer child died (exit status {died})"}, stderr)
                if self.fork_per_request:
                    return Reply(
                        "failed",
                        {
                            "error": f"scorer child did not answer within {backstop:.0f} s (its own "
                            f"deadline on the fork is {wall_seconds:.0f} s)"
                        },
                        stderr,
                    )
                return Reply("timeout", {"error": "scorer timed out"}, stderr)
            if FAILURE_KEY in reply:
                return Reply("failed", {"error": str(reply[FAILURE_KEY])[:500]}, stderr)
            if TIMEOUT_KEY in reply:
                return Reply("timeout", {"error": "scorer timed out"}, stderr)
        return Reply("ok", reply, stderr)

    def close(self) -> None:
        with self._lock:
            self._kill()
            if self._spawner is not None:
                self._spawner.shutdown(wait=False)
                self._spawner = None


def _libc() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def harden(allow_fork: bool = False) -> None:
    """Irreversible for this process: called once the scorer is built, before the first untrusted answer.

    ``allow_fork`` leaves out the one limit that forbids new processes, for a child that scores every request in a
    fork (``deny_processes`` is then the fork's first act); the child is also made non-dumpable, so that its forks,
    which share its user, cannot ptrace it or read its memory."""
    import resource

    libc = _libc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # writes fail with EFBIG (Python ignores SIGXFSZ)
    sys.dont_write_bytecode = True
    if os.getuid() == 0:
        if libc is not None:
            libc.unshare(CLONE_NEWNET)  # best effort: a fresh namespace has no interfaces but loopback
        os.makedirs(EMPTY_ROOT, mode=0o555, exist_ok=True)
        os.chroot(EMPTY_ROOT)  # nothing left to read or delete
        os.chdir("/")
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    if libc is not None:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if not allow_fork:
        deny_processes()


def deny_processes() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no fork, no threads, no subprocess


class ImportWatch:
    """A meta-path finder put first after the lockdown: Python asks it about every module not yet loaded, so any
    name it sees is an import the lockdown broke (the normal finders can no longer read the module's file)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.names.append(name)
        return None  # the import goes on (and fails) exactly as it would without the watch


def preimport(packages: tuple[str, ...]) -> int:
    """Import every module of ``packages`` (but tests and tools); returns how many modules it imported."""
    import pkgutil

    loaded = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases announce themselves on import
        for package_name in packages:
            package = importlib.import_module(package_name)
            for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
                if any(part in module.name for part in SKIPPED_MODULE_PARTS):
                    continue
                try:
                    importlib.import_module(module.name)
                    loaded += 1
                except ImportError:  # an optional dependency that is not installed: unreachable without lockdown too
                    pass
    return loaded


def preimport_lazy_libraries() -> int:
    """``preimport`` the ``LAZY_PACKAGES`` of every library the scorer has imported."""
    return sum(preimport(packages) for top, packages in LAZY_PACKAGES.items() if top in sys.modules)


def _read_exact(stream: Any, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _answer(handler: Callable[[dict[str, Any]], dict[str, Any]], request: dict[str, Any], watch: ImportWatch) -> str:
    """The reply line for one request, computed in this process: whatever the scorer raises is a bad answer."""
    watch.names.clear()
    try:
        reply = handler(request)
    except (Exception, MemoryError, RecursionError) as error:
        reply = {"error": f"{type(error).__name__}: {str(error)[:200]}"}
    if watch.names:  # whatever the scorer replied, it replied without a module it wanted
        reply = {
            FAILURE_KEY: f"the scorer imported {', '.join(sorted(set(watch.names))[:5])} after the "
            f"lockdown (no module file is readable there)"
        }
    try:
        return json.dumps(reply)
    except (TypeError, ValueError):
        return json.dumps({"error": "the scorer returned something that is not plain data"})


def _answer_in_fork(
    handler: Callable[[dict[str, Any]], dict[str, Any]],
    request: dict[str, Any],
    watch: ImportWatch,
    wall_seconds: float,
    private_fds: tuple[int, ...],
) -> str:
    """The reply line for one request, computed in a fork of this process that exits right after.

    Whatever the answer does to the fork (rewrites the scorer, patches builtins, sets globals, extra reply lines)
    dies with it: this process runs no code that depends on the answer, and forwards at most one line, read from a
    pipe of this request alone. A fork that outlives ``wall_seconds`` is killed (a timeout: the answer's doing);
    one that dies without a reply, is killed by someone else or is found stopped is a failure of the scorer."""
    try:
        readable, writable = os.pipe()
    except OSError as error:
        return json.dumps({FAILURE_KEY: f"the scorer could not make a reply pipe for its fork: {error}"})
    try:
        pid = os.fork()
    except OSError as error:  # out of memory or processes: the machine's trouble, not the answer's
        os.close(readable)
        os.close(writable)
        return json.dumps({FAILURE_KEY: f"the scorer could not fork: {error}"})
    if pid == 0:  # the fork: never returns into the serving loop, whatever happens
        status = 70
        try:
            os.close(readable)
            for fd in private_fds:  # the request stream and the real reply pipe stay the parent's alone
                os.close(fd)
            libc = _libc()
            if libc is not None:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # fork() clears it
            deny_processes()
            line = _answer(handler, request, watch)
            sys.stderr.flush()
            data = (line + "\n").encode()
            while data:
                data = data[os.write(writable, data) :]
            status = 0
        finally:
            os._exit(status)
    os.close(writable)
    deadline = time.monotonic() + wall_seconds
    received, exited, stopped = b"", False, False
    process_fd = os.pidfd_open(pid)
    try:
        watched = [readable, process_fd]
        while readable in watched or not exited:
            remaining = deadline - time.monotonic()
            ready = select.select(watched, [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not ready:
                state = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG | os.WNOWAIT)  # None while it runs
                stopped = state is not None and state.si_code in (os.CLD_STOPPED, os.CLD_TRAPPED)
                signal.pidfd_send_signal(process_fd, signal.SIGKILL)  # by pidfd: never a recycled pid
                os.waitpid(pid, 0)
                if stopped:
                    return json.dumps(
                        {
                            FAILURE_KEY: "the scorer's fork was stopped by a signal (its answer's or "
                            "another process's) and did not finish in time"
                        }
                    )
                return json.dumps({TIMEOUT_KEY: True})
            if readable in ready:
                chunk = os.read(readable, 65536)
                received += chunk
                if not chunk or len(received) > MAX_REPLY_BYTES:
                    watched.remove(readable)
            if process_fd in ready:
                exited = True
                watched.remove(process_fd)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(readable)
        os.close(process_fd)
    first_line = received.split(b"\n", 1)[0]
    if b"\n" not in received or os.waitstatus_to_exitcode(status) != 0:
        return json.dumps(
            {FAILURE_KEY: f"the scorer's fork died without a reply (exit status {os.waitstatus_to_exitcode(status)})"}
        )
    try:
        reply = json.loads(first_line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        return json.dumps({FAILURE_KEY: "the scorer's fork replied with something that is not a JSON object"})
    return json.dumps(reply)


def serve(factory: str, options: dict[str, Any], fork_per_request: bool = False) -> None:
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    module_name, _, function_name = factory.partition(":")
    handler: Callable[[dict[str, Any]], dict[str, Any]] = getattr(importlib.import_module(module_name), function_name)(
        **options
    )
    preimport_lazy_libraries()
    warnings.simplefilter("ignore")  # again: libraries add their own filters on import (sympy: "once")
    harden(allow_fork=fork_per_request)
    watch = ImportWatch()
    sys.meta_path.insert(0, watch)
    if fork_per_request:
        # Signals a fork may send its parent end it (a failure the host sees), never raise in its serving loop.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        gc.collect()
        gc.freeze()  # the forks' collections leave the warm objects alone (and their pages shared)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    requests = sys.stdin.buffer
    while True:
        header = _read_exact(requests, 4)
        if header is None:
            return
        payload = _read_exact(requests, struct.unpack(">I", header)[0])
        if payload is None:
            return
        envelope = pickle.loads(payload)
        if fork_per_request:
            line = _answer_in_fork(
                handler,
                envelope["request"],
                watch,
                float(envelope["wall_seconds"]),
                (requests.fileno(), replies.fileno()),
            )
        else:
            line = _answer(handler, envelope["request"], watch)
        sys.stderr.flush()
        replies.write(line + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]), fork_per_request="--fork-per-request" in sys.argv[3:])
