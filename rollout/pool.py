"""A worker pool started from Python: rollout worker processes, each in its own session.

The Python counterpart of running `verifarm workers start` on each machine; used by the demo and the
benchmark. Each process receives the pool's FarmConfig on its stdin (`verifarm.rollout.pool_worker`), never
through environment variables. `stop()` always ends every process it started (and their pool processes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from verifarm.rollout.broker import sender_app
from verifarm.rollout.config import FarmConfig


class WorkerPool:
    """`processes` worker processes of `concurrency` pool processes each, on the farm's broker and store."""

    def __init__(
        self, farm: FarmConfig, log_dir: Path, processes: int = 1, concurrency: int = 1, name: str = "pool"
    ) -> None:
        if processes < 1 or concurrency < 1:
            raise ValueError(f"a pool needs >= 1 process of >= 1 concurrency, got {processes} x {concurrency}")
        self.farm, self.log_dir, self.name = farm, Path(log_dir), name
        self.processes_wanted, self.concurrency = processes, concurrency
        self.processes: list[subprocess.Popen] = []

    def start(self) -> WorkerPool:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The farm goes on stdin; no VERIFARM_* variable of this process reaches the workers, so nothing but
        # this FarmConfig decides which farm they join.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
        farm_json = self.farm.model_dump_json().encode()
        for index in range(self.processes_wanted):
            command = [
                sys.executable,
                "-m",
                "verifarm.rollout.pool_worker",
                str(self.concurrency),
                f"{self.name}-{index}@%h",
                "WARNING",
            ]
            # The worker writes to its own copy of the log's descriptor; ours is closed once it has started.
            with open(self.log_dir / f"{self.name}-{index}.log", "wb") as log:
                process = subprocess.Popen(
                    command,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.PIPE,
                    start_new_session=True,
                )
            self.processes.append(process)
            assert process.stdin is not None  # stdin=PIPE
            process.stdin.write(farm_json)
            process.stdin.close()
        return self

    def node_names(self) -> list[str]:
        return [f"{self.name}-{index}@{os.uname().nodename}" for index in range(self.processes_wanted)]

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Block until every worker answers a ping (so start-up time is not counted as rollout time)."""
        app = sender_app(self.farm)
        wanted = set(self.node_names())
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            answered = {name for reply in app.control.ping(timeout=1.0) for name in reply}
            if wanted <= answered:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"workers {sorted(wanted - answered)} did not answer within {timeout_s}s; see {self.log_dir}"
                )

    def check_alive(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                log = (self.log_dir / f"{self.name}-{index}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {index} exited with {process.returncode}:\n{log}")

    def stop(self, timeout_s: float = 20.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # warm shutdown: running batches finish
        for process in self.processes:
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.processes = []

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
