"""The warm pool both isolated backends share: long-lived sandboxes, each running `agent.py` as its pid 1.

A run is one request over the agent's unix socket: the agent forks the program from its fork server (or
starts it) as the sandbox's own run uid under the run's rlimits, the host re-caps the sandbox's cgroup to
the run's memory limit first, and the agent wipes every process and file of the run before it answers. A
sandbox that misbehaves or reports an unclean wipe is thrown away and a fresh one takes its place. How a
sandbox is started (a docker container, a bwrap sandbox) is the subclass's part.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path

from verifarm.sandbox.agent import decode_reply, receive_message, send_message
from verifarm.sandbox.backend import Backend
from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.outcome import classify, infra_error
from verifarm.sandbox.program import ExecResult, Limits, Program
from verifarm.sandbox.supervisor import SpawnRequest

SANDBOX_SOURCE = Path(__file__).parent  # bind-mounted read-only at /opt/verifarm in every sandbox
AGENT_COMMAND = ["python3", "-I", "-S", "/opt/verifarm/agent.py"]
AGENT_MEMORY = 96 * 1024 * 1024  # the agent, its fork server and the idle child, on top of the run
# What the agent keeps of root's powers: switch to the run uid, kill and chown what the run left.
AGENT_CAPABILITIES = ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER")


class AgentUnreachable(OSError):
    """The agent did not take the connection: the request, and so the program, never reached the sandbox."""


class AgentSocket:
    """The host's end of an agent: a unix socket in a root-only folder bind-mounted at /run/verifarm."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "agent.sock"

    def listening(self) -> bool:
        """An empty connection: the agent accepts it and goes back to waiting."""
        if not self.path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
                return True
            except OSError:
                return False

    def request(self, message: dict, timeout: float) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            try:
                connection.connect(str(self.path))
            except OSError as error:
                raise AgentUnreachable(error.errno, f"agent unreachable: {error.strerror or error}") from error
            send_message(connection, message)
            return receive_message(connection)

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
            self.folder.rmdir()
        except OSError:
            pass


class WarmSandbox(ABC):
    """One started sandbox: its name, the agent's socket, the cgroup that holds it (None: not reachable)."""

    name: str
    agent: AgentSocket
    cgroup: Cgroup | None

    def wait_for_agent(self, timeout: float, describe_failure) -> None:
        deadline = time.monotonic() + timeout
        while not self.agent.listening():
            if time.monotonic() > deadline or not self.alive():
                detail = describe_failure()
                self.destroy()
                raise RuntimeError(f"sandbox {self.name} did not start its agent: {detail}")
            time.sleep(0.005)

    def request(self, message: dict, timeout: float) -> dict:
        return self.agent.request(message, timeout)

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def destroy(self) -> None:
        """Stop every process of the sandbox and release what it held; idempotent."""


class WarmPoolBackend(Backend):
    """Up to pool_size warm sandboxes, started on demand, one run at a time each."""

    def __init__(self, pool_size: int, memory_ceiling: int):
        self._pool_size, self._memory_ceiling = pool_size, memory_ceiling
        self._idle: queue.LifoQueue[WarmSandbox] = queue.LifoQueue()
        self._all: dict[str, WarmSandbox] = {}  # every live sandbox, idle or running a program
        self._started = 0
        self._lock = threading.Lock()
        self._closed = False

    @abstractmethod
    def _start_sandbox(self) -> WarmSandbox: ...

    def _take(self) -> WarmSandbox:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} backend is closed")
            grow = self._idle.empty() and self._started < self._pool_size
            if grow:
                self._started += 1
        if grow:
            try:
                sandbox = self._start_sandbox()
            except Exception:
                with self._lock:
                    self._started -= 1
                raise
            with self._lock:
                self._all[sandbox.name] = sandbox
            return sandbox
        return self._idle.get()

    def _give_back(self, sandbox: WarmSandbox, healthy: bool) -> None:
        if healthy and not self._closed:
            self._idle.put(sandbox)
            return
        sandbox.destroy()
        with self._lock:
            self._started -= 1
            self._all.pop(sandbox.name, None)

    def warm_up(self) -> None:
        """Start the whole pool now instead of on first use."""
        taken = [self._take() for _ in range(self._pool_size)]
        for sandbox in taken:
            self._give_back(sandbox, True)

    def run(self, program: Program, limits: Limits) -> ExecResult:
        started = time.monotonic()
        spawn = SpawnRequest.under(limits, program.command)  # the agent sets cwd, env and stdin
        wire_spawn = asdict(spawn)
        wire_spawn["stdin"] = ""
        message = {
            "spawn": wire_spawn,
            "stdin": program.stdin.hex(),
            "outputs": list(program.outputs),
            "files": {name: data.hex() for name, data in program.file_bytes().items()},
        }
        # Everything that can fail on the program's content happens above, before a sandbox is taken:
        # a sandbox taken must always be given back. A sandbox whose agent did not even take the connection (it
        # died after starting, seen on a loaded machine) never saw the program, so one fresh sandbox is tried.
        for attempt in (1, 2):
            try:
                sandbox = self._take()
            except Exception as error:
                return infra_error(self.name, f"no warm sandbox: {error}", time.monotonic() - started)
            healthy = capped = False
            try:
                cgroup = sandbox.cgroup
                capped = cgroup is not None and cgroup.cap_memory(
                    min(limits.memory_bytes + AGENT_MEMORY, self._memory_ceiling)
                )
                capping = cgroup if capped else None  # its OOM kills tell that the run hit the memory cap
                oom_before = capping.oom_kills() if capping is not None else 0
                reply = sandbox.request(message, timeout=limits.wall_seconds + 30)
                healthy = bool(reply.get("clean"))
                if "error" in reply:
                    return infra_error(self.name, f"sandbox agent failed: {reply['error']}", time.monotonic() - started)
                raw, outputs = decode_reply(reply)
                raw.memory_exceeded = capping is not None and capping.oom_kills() > oom_before
                break
            except AgentUnreachable as error:
                if attempt == 2:
                    return infra_error(self.name, f"sandbox failed: {error}", time.monotonic() - started)
            except (OSError, ValueError, KeyError) as error:
                return infra_error(self.name, f"sandbox failed: {error}", time.monotonic() - started)
            finally:
                self._give_back(sandbox, healthy)
        notes = [] if healthy else ["sandbox discarded after an unclean wipe"]
        if limits.network:
            notes.append("network was requested but warm sandboxes never have one")
        if sandbox.cgroup is None:
            notes.append("no cgroup: memory is capped per process only, and CPU seconds but not cores")
        elif not capped:
            notes.append(f"memory capped per process and at {self._memory_ceiling} bytes per sandbox")
        return classify(raw, limits, self.name, outputs, note="; ".join(notes))

    def sandbox_names(self) -> list[str]:
        """Names of the pool's live sandboxes (idle or running a program)."""
        with self._lock:
            return list(self._all)

    def sandboxes(self) -> list[WarmSandbox]:
        with self._lock:
            return list(self._all.values())

    def close(self) -> None:
        """Stop every sandbox of the pool, including ones still running a program."""
        with self._lock:
            self._closed = True
            sandboxes = list(self._all.values())
            self._all.clear()
        for sandbox in sandboxes:
            sandbox.destroy()
