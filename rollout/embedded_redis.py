"""A private redis-server for one machine with nothing running: started on a free port under VERIFARM_HOME.

Its queue is persisted (append-only file, fsync on every write) so that stopping it between commands, or a crash,
loses no queued batch. Other commands find a running one through the state file next to its data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from verifarm.processes import process_alive


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class EmbeddedRedis:
    """One redis-server whose data, log and state file live in `folder`."""

    def __init__(self, folder: Path, executable: str = "redis-server") -> None:
        self.folder = Path(folder)
        self.executable = executable
        self.state_file = self.folder / "server.json"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two commands starting at once must not run two servers on one append-only file.
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "start.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def running_url(self) -> str | None:
        """The URL of this folder's server if one is up and answering."""
        state = self._state()
        if state is None or not process_alive(int(state["pid"])):
            return None
        url = f"redis://127.0.0.1:{state['port']}/0"
        return url if _answers(url) else None

    def start(self, port: int | None = None, timeout_s: float = 15.0) -> tuple[str, int]:
        """Start a server (or find the running one). Returns (url, pid); the pid is 0 if it was already running."""
        if shutil.which(self.executable) is None:
            raise ValueError(f"{self.executable!r} is not installed; install Redis or set VERIFARM_REDIS_URL")
        with self._lock():
            existing = self.running_url()
            if existing:
                return existing, 0
            port = port or free_port()
            command = [
                self.executable,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(self.folder.resolve()),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str((self.folder / "redis.log").resolve()),
                "--protected-mode",
                "yes",
            ]
            # Its own session: a Ctrl-C meant for the CLI must not kill the broker before the CLI stops it.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + timeout_s
            while not _answers(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"redis-server did not start on port {port}; see {self.folder / 'redis.log'}")
                time.sleep(0.05)
            self.state_file.write_text(json.dumps({"pid": process.pid, "port": port}))
            return url, process.pid

    def stop_recorded(self) -> bool:
        """Stop the server this folder's state file names (e.g. one left by a crashed command). True if one ran."""
        state = self._state()
        if state is None or not process_alive(int(state["pid"])):
            self.state_file.unlink(missing_ok=True)
            return False
        self.stop(int(state["pid"]))
        return True

    def stop(self, pid: int, timeout_s: float = 15.0) -> None:
        """Stop the server we started (SIGTERM lets it flush its append-only file)."""
        if pid <= 0:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child: poll for it to disappear
                finished = 0 if process_alive(pid) else pid
            if finished:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        state = self._state()
        if state is not None and int(state["pid"]) == pid:
            self.state_file.unlink(missing_ok=True)


@contextlib.contextmanager
def session_broker(redis_url: str | None, home: Path) -> Iterator[str]:
    """The configured broker, or this home's running private Redis, or a private one for this session only."""
    if redis_url:
        yield redis_url
        return
    server = EmbeddedRedis(home / "redis")
    url, pid = server.start()
    try:
        yield url
    finally:
        server.stop(pid)  # no-op when it was already running: its starter stops it
