"""The farm end to end: real Redis, real Celery worker processes, real envs and verifiers, a real checkpoint.

Workers are started the way users start them (`verifarm workers start`, `celery -A verifarm.rollout.app worker`)
in their own process groups, so a test can SIGKILL one like a machine that died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import yaml

from verifarm.rollout.app import create_app, queue_keys
from verifarm.rollout.campaign import cancel, parse_spec, status
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.store import RecordFilter, RolloutStore, record_id_for
from verifarm.rollout.submission import submit
from verifarm.settings import FarmTuning

pytestmark = pytest.mark.slow

ENV_MIX = [
    {"env_id": "verifarm/Addition-v0", "weight": 2, "min_difficulty": 1, "max_difficulty": 3},
    {"env_id": "verifarm/Arithmetic-v0", "options": {"operations": ["-", "*"]}, "max_difficulty": 2},
    {"env_id": "verifarm/MathAnswer-v0"},
]


@dataclass
class Farm:
    """Environment and processes of one test farm; everything started is stopped at teardown."""

    home: Path
    store_url: str
    checkpoint_dir: Path
    redis_url: str | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
        env.update(
            {
                "VERIFARM_HOME": str(self.home),
                "VERIFARM_DATABASE_URL": self.store_url,
                "VERIFARM_CHECKPOINT_DIR": str(self.checkpoint_dir),
                "VERIFARM_SANDBOX_BACKEND": "process",
                # Short enough that a killed worker's batch is handed on within the test, long enough that
                # a healthy batch (including the first policy load) is not.
                "VERIFARM_FARM_VISIBILITY_TIMEOUT_S": "12",
                "VERIFARM_FARM_RESTORE_INTERVAL_S": "1",
                "VERIFARM_FARM_RECONCILE_INTERVAL_S": "2",
            }
        )
        if self.redis_url:
            env["VERIFARM_REDIS_URL"] = self.redis_url
        return env

    def config(self) -> FarmConfig:
        assert self.redis_url, "this farm's broker is started by its workers"
        return FarmConfig(
            broker_url=self.redis_url,
            store_url=self.store_url,
            checkpoint_dir=self.checkpoint_dir,
            tuning=FarmTuning(visibility_timeout_s=12, restore_interval_s=1, reconcile_interval_s=2),
        )

    def start_worker(self, name: str, plain_celery: bool = False) -> subprocess.Popen:
        if plain_celery:
            # Exactly the plain command of the docs: no queue named, the app's default queue is consumed.
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "verifarm.rollout.app",
                "worker",
                "-c",
                "1",
                "-n",
                f"{name}@%h",
                "-l",
                "INFO",
            ]
        else:
            command = [sys.executable, "-m", "verifarm.cli", "workers", "start", "-c", "1", "-n", f"{name}@%h"]
        with open(self.home / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "verifarm.cli", *args], env=self.env(), capture_output=True, text=True, timeout=120
        )

    def count(self, campaign_id: str) -> int:
        with RolloutStore(self.store_url) as store:
            return store.count(RecordFilter(campaign_id=campaign_id))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # A private Redis started by `workers start` lives in its own session: never leave one behind.
        EmbeddedRedis(self.home / "redis").stop_recorded()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, farm: Farm | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = ""
            if farm is not None:
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in farm.home.glob("*.log"))
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")
        time.sleep(0.2)


@pytest.fixture
def farm(tmp_path: Path, postgres_url: str, checkpoint_root: Path) -> Iterator[Farm]:
    home = tmp_path / "home"
    home.mkdir()
    made = Farm(home=home, store_url=postgres_url, checkpoint_dir=checkpoint_root)
    try:
        yield made
    finally:
        made.stop_all()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, str, list[int]]]:
    """A redis-server this test may kill and restart on the same port and data folder."""
    server = EmbeddedRedis(tmp_path / "broker")
    url, pid = server.start()
    pids = [pid]
    try:
        yield server, url, pids
    finally:
        server.stop(pids[-1])


def assert_complete_and_unique(farm: Farm, campaign_id: str, tasks: int, samples: int) -> None:
    with RolloutStore(farm.store_url) as store:
        records = store.query(RecordFilter(campaign_id=campaign_id))
    expected = {record_id_for(campaign_id, t, s) for t in range(tasks) for s in range(samples)}
    assert len(records) == tasks * samples
    assert {r.record_id for r in records} == expected


def test_cli_farm_on_embedded_redis_completes_exactly(farm: Farm) -> None:
    """No Redis configured: `workers start` runs a private one, a plain celery worker and `campaign submit`
    find it, and a campaign over several envs ends with exactly tasks x samples records."""
    spec = {
        "name": "e2e",
        "envs": ENV_MIX,
        "tasks": 12,
        "samples_per_task": 3,
        "batch_size": 3,
        "policy": "latest",
        "sampling": {"temperature": 1.0, "max_new_tokens": 24},
    }
    (farm.home / "spec.yaml").write_text(yaml.safe_dump(spec))
    farm.start_worker("cli-worker")
    server = EmbeddedRedis(farm.home / "redis")
    wait_until(lambda: server.running_url() is not None, 60, "the private Redis of `workers start`", farm)
    farm.start_worker("plain-worker", plain_celery=True)
    # Both answer before the campaign goes in, so each takes a batch at once (prefetch 1).
    app = create_app(
        FarmConfig(broker_url=server.running_url(), store_url=farm.store_url, checkpoint_dir=farm.checkpoint_dir)
    )

    def both_ready() -> bool:
        answered = {name.split("@")[0] for reply in app.control.ping(timeout=0.5) for name in reply}
        return {"cli-worker", "plain-worker"} <= answered

    wait_until(both_ready, 90, "both workers to answer a ping", farm)

    submitted = farm.cli("campaign", "submit", str(farm.home / "spec.yaml"), "--id", "e2e-1")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == "e2e-1"
    wait_until(lambda: farm.count("e2e-1") >= 36, 150, "all records", farm)
    assert_complete_and_unique(farm, "e2e-1", 12, 3)

    state = json.loads(farm.cli("campaign", "status", "e2e-1", "--json").stdout)
    assert state["state"] == "done" and state["done"] == state["expected"] == 36
    assert state["infra_errors"] == 0
    with RolloutStore(farm.store_url) as store:
        records = store.query(RecordFilter(campaign_id="e2e-1"))
    assert {r.env_id for r in records} == {e["env_id"] for e in ENV_MIX}
    assert {r.policy_version for r in records} == {1}
    # Both workers took part (each holds one batch at a time, so the queue was shared).
    logs = [(farm.home / f"{n}.log").read_text() for n in ("cli-worker", "plain-worker")]
    assert all("succeeded" in log for log in logs), logs

    listed = farm.cli("workers", "ls")
    assert "cli-worker@" in listed.stdout and "plain-worker@" in listed.stdout, listed.stdout + listed.stderr

    # Stopping the pool that started the private Redis stops that Redis too.
    farm.stop_all()
    assert server.running_url() is None


def test_sigkilled_worker_and_redis_restart_lose_and_duplicate_nothing(farm: Farm, private_redis, publish_tiny) -> None:
    """Mid-campaign, one worker dies by SIGKILL while it holds a batch, then the broker dies hard and comes back:
    the campaign still completes with every record exactly once. (One campaign for both faults keeps the
    suite within its time budget; the logs name which fault a failure follows.)"""
    server, farm.redis_url, pids = private_redis
    port = int(farm.redis_url.rsplit(":", 1)[1].split("/")[0])
    spec = parse_spec(
        {
            "name": "faults",
            "envs": ENV_MIX[:2],
            "tasks": 48,
            "samples_per_task": 4,
            "batch_size": 4,
            "policy": "latest",
            "sampling": {"max_new_tokens": 48},
        }
    )
    # The victim works alone until it dies, so it certainly holds a second batch (a survivor started beside it
    # could take every batch first and leave it none).
    victim = farm.start_worker("victim", plain_celery=True)
    submit(spec, farm.config(), "faults-1")
    victim_log = farm.home / "victim.log"
    wait_until(lambda: "succeeded" in victim_log.read_text(), 120, "the victim's first batch", farm)
    # Kill it while it holds its next batch: the whole worker, pool and all, like a machine that died.
    wait_until(
        lambda: victim_log.read_text().count("received") > victim_log.read_text().count("succeeded"),
        60,
        "the victim to take another batch",
        farm,
    )
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    at_kill = farm.count("faults-1")
    assert at_kill < 192
    # A new policy version lands meanwhile: the survivor swaps it in between batches ("latest"), and the
    # victim's batch, handed on only after the visibility timeout, is certainly sampled with it.
    assert publish_tiny(farm.checkpoint_dir, seed=5) == 2
    survivor = farm.start_worker("survivor", plain_celery=True)

    # Then one pool process of the survivor dies: its batch goes straight back to the queue
    # (task_reject_on_worker_lost) and the worker forks a new pool process.
    survivor_log = farm.home / "survivor.log"
    wait_until(
        lambda: survivor_log.read_text().count("received") > survivor_log.read_text().count("succeeded"),
        60,
        "the survivor to hold a batch",
        farm,
    )
    pool_children = Path(f"/proc/{survivor.pid}/task/{survivor.pid}/children").read_text().split()
    assert pool_children, "the survivor has no pool process"
    os.kill(int(pool_children[0]), signal.SIGKILL)

    wait_until(lambda: farm.count("faults-1") >= at_kill + 32, 60, "more batches by the survivor", farm)
    os.kill(pids[-1], signal.SIGKILL)  # the broker dies hard; its append-only file keeps queue and unacked
    os.waitpid(pids[-1], 0)
    at_restart = farm.count("faults-1")
    time.sleep(1.5)
    _, pid = server.start(port=port)
    pids.append(pid)
    assert at_restart < 192, "the campaign ended before the broker restart; make it longer"

    wait_until(lambda: farm.count("faults-1") >= 192, 150, "the campaign to finish, redelivered batch included", farm)
    assert_complete_and_unique(farm, "faults-1", 48, 4)
    assert status("faults-1", farm.store_url).state == "done"
    with RolloutStore(farm.store_url) as store:
        assert {r.policy_version for r in store.query(RecordFilter(campaign_id="faults-1"))} == {1, 2}


def test_a_batch_the_broker_lost_is_enqueued_again_by_the_workers(farm: Farm, private_redis) -> None:
    """A message gone from the broker (popped by a consumer whose broker then died before it was recorded as
    unacknowledged) comes back through the workers' sweep, with no operator: the campaign completes."""
    _, farm.redis_url, _ = private_redis
    spec = parse_spec(
        {
            "name": "lost",
            "envs": ENV_MIX[:1],
            "tasks": 16,
            "samples_per_task": 2,
            "batch_size": 4,
            "policy": "reference",
        }
    )
    submit(spec, farm.config(), "lost-1")
    broker = redis.Redis.from_url(farm.redis_url)
    queues = [key for key in queue_keys() if broker.llen(key)]
    assert sum(broker.llen(key) for key in queues) == 4
    assert broker.rpop(queues[0]) is not None  # the next batch to be delivered vanishes
    farm.start_worker("w1", plain_celery=True)
    # The three batches still queued run at once; the sweep waits until the campaign is older than the
    # visibility timeout (12 s), then enqueues the lost one again.
    wait_until(lambda: farm.count("lost-1") >= 32, 60, "the lost batch, enqueued again by the sweep", farm)
    assert_complete_and_unique(farm, "lost-1", 16, 2)
    assert "enqueued them again" in (farm.home / "w1.log").read_text()


def test_cancel_stops_new_work_and_keeps_records(farm: Farm, private_redis) -> None:
    _, farm.redis_url, _ = private_redis
    spec = parse_spec(
        {
            "name": "cancel",
            "envs": ENV_MIX[:1],
            "tasks": 200,
            "samples_per_task": 4,
            "batch_size": 4,
            "policy": "latest",
            "sampling": {"max_new_tokens": 48},
        }
    )
    farm.start_worker("w1", plain_celery=True)
    submit(spec, farm.config(), "cancel-1")
    wait_until(lambda: farm.count("cancel-1") >= 16, 120, "some records", farm)
    result = farm.cli("campaign", "cancel", "cancel-1")
    assert result.returncode == 0, result.stderr
    at_cancel = farm.count("cancel-1")
    broker = redis.Redis.from_url(farm.redis_url)
    # The remaining batches are consumed without work: the queue drains fast.
    wait_until(lambda: sum(broker.llen(key) for key in queue_keys()) == 0, 60, "the queue to drain", farm)
    time.sleep(1.0)
    final = farm.count("cancel-1")
    assert final - at_cancel <= 4 * 4  # at most the batch that was running when the flag was set
    assert 16 <= final < 800
    st = status("cancel-1", farm.store_url)
    assert st.state == "cancelled" and st.done == final
    # What was collected stays, complete per task.
    with RolloutStore(farm.store_url) as store:
        per_task: dict[int, int] = {}
        for r in store.query(RecordFilter(campaign_id="cancel-1")):
            per_task[r.task_index] = per_task.get(r.task_index, 0) + 1
    assert set(per_task.values()) == {4}
    cancel("cancel-1", farm.store_url)  # cancelling twice is harmless
