"""The farm on separate network hosts: workers on two hosts, a trainer on a third, services on a fourth."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.multihost.conftest import REGISTRY_PORT, WORKER_HOSTS, HostFarm, wait_until
from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import record_id_for

pytestmark = pytest.mark.slow


def write_spec(farm: HostFarm, name: str, **fields) -> str:
    spec = {
        "name": name,
        "envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 2}],
        "tasks": 12,
        "samples_per_task": 2,
        "batch_size": 2,
        "policy": "reference",
        "sampling": {"max_new_tokens": 32},
        **fields,
    }
    path = farm.home("trainer") / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def assert_every_record_once(farm: HostFarm, campaign_id: str, tasks: int, samples: int) -> list[dict]:
    records = farm.records(campaign_id)
    ids = [record["record_id"] for record in records]
    expected = {record_id_for(campaign_id, t, s) for t in range(tasks) for s in range(samples)}
    assert len(ids) == len(expected) and set(ids) == expected
    return records


def log_text(farm: HostFarm, host: str, name: str = "workers.log") -> str:
    return (farm.home(host) / name).read_text(errors="replace")


TRAINER_CONFIG = {
    "corpus": {"seed": 0, "arithmetic_max_digits": 1, "arithmetic_documents": 200, "heldout_fraction": 0.2},
    "schedule": {"pretrain_steps": 1, "posttrain_steps": 1},
    "batch_size": 4,
    "max_seq_len": 48,
    "publish_every": 10,
    "evaluate_on_publish": False,
    "staleness_bound": 100,
    "torch_threads": 1,
}


@pytest.fixture(scope="module")
def registry_server(host_farm: HostFarm) -> None:
    """The trainer host: a first version published into its own folder, served read-only to the other hosts."""
    init = host_farm.cli("trainer", "policy", "init", "--random")
    assert init.returncode == 0, init.stderr
    address = host_farm.host("trainer").address
    host_farm.start(
        "trainer", "registry.log", "policy", "serve-registry", "--host", address, "--port", str(REGISTRY_PORT)
    )
    wait_until(
        lambda: "serving the registry" in log_text(host_farm, "trainer", "registry.log"), 60, "the registry server"
    )


@pytest.fixture(scope="module")
def trainer(host_farm: HostFarm, registry_server) -> Path:
    """The training daemon's config; the test starts the daemon, and it is stopped whatever happens."""
    config = host_farm.home("trainer") / "trainer.yaml"
    config.write_text(yaml.safe_dump(TRAINER_CONFIG))
    try:
        yield config
    finally:
        host_farm.cli("trainer", "train", "stop", "--timeout", "20")


@pytest.fixture(scope="module")
def worker_pools(host_farm: HostFarm, registry_server) -> dict:
    """A pool of one process on each worker host, fetching checkpoints from the trainer host."""
    pools = {}
    for host in WORKER_HOSTS:
        pools[host] = host_farm.start(host, "workers.log", "workers", "start", "-c", "1", "-n", f"{host}@%h")

    def both_answer() -> bool:
        exited = [host for host, pool in pools.items() if pool.poll() is not None]
        if exited:
            pytest.fail(f"the pool on {exited} exited at start\n{host_farm.logs()}")
        return set(WORKER_HOSTS) <= host_farm.workers_answering()

    wait_until(both_answer, 180, "both worker hosts to answer", host_farm.logs)
    return pools


def trainer_pid(farm: HostFarm) -> int:
    return int((farm.home("trainer") / "trainer" / "trainer.pid").read_text())


def trainer_versions(farm: HostFarm) -> list[int]:
    return CheckpointRegistry(farm.home("trainer") / "checkpoints").published_versions()


def test_a_campaign_submitted_on_one_host_is_sampled_on_two_others(host_farm: HostFarm, worker_pools) -> None:
    submitted = host_farm.cli("trainer", "campaign", "submit", write_spec(host_farm, "spread"), "--id", "spread-1")
    assert submitted.returncode == 0, submitted.stderr
    state = host_farm.wait_complete("spread-1", 180)
    assert state["state"] == "done" and state["done"] == state["expected"] == 24
    assert_every_record_once(host_farm, "spread-1", 12, 2)
    for host in WORKER_HOSTS:
        assert "succeeded" in log_text(host_farm, host), host_farm.logs()
    # Nothing of the farm leaked into another host's folders: each keeps its own home.
    assert not (host_farm.home("worker-a") / "rollouts.db").exists()


def test_workers_fetch_the_trainers_versions_while_it_trains_and_survives_a_sigkill(
    host_farm: HostFarm, worker_pools, trainer: Path
) -> None:
    """Workers on two hosts sample `latest` from checkpoints they fetch from the trainer host; the trainer
    publishes new versions while they sample, is SIGKILLed mid-step and started again: every record once."""
    started = host_farm.cli("trainer", "train", "start", "--config", str(trainer))
    assert started.returncode == 0, started.stderr + host_farm.logs()
    spec = write_spec(host_farm, "follow", policy="latest", tasks=16, sampling={"max_new_tokens": 48})
    # Submitted from a worker host: the policy check there goes through the registry server too.
    submitted = host_farm.cli("worker-b", "campaign", "submit", spec, "--id", "follow-1")
    assert submitted.returncode == 0, submitted.stderr
    wait_until(lambda: len(trainer_versions(host_farm)) >= 3, 240, "the trainer to publish twice", host_farm.logs)

    pid = trainer_pid(host_farm)
    os.kill(pid, signal.SIGKILL)  # it steps without pause: this lands mid-step
    # Its parent (`train start`) is gone: the dead daemon is reaped by init, which may take a moment.
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, "the killed trainer to be reaped")
    before_restart = max(trainer_versions(host_farm))
    restarted = host_farm.cli("trainer", "train", "start", "--config", str(trainer))
    assert restarted.returncode == 0, restarted.stderr + host_farm.logs()

    state = host_farm.wait_complete("follow-1", 300)
    assert state["state"] == "done"
    records = assert_every_record_once(host_farm, "follow-1", 16, 2)
    sampled_with = {record["policy_version"] for record in records}
    assert len(sampled_with) >= 2, f"no new version was taken up mid-campaign: {sampled_with}"
    wait_until(
        lambda: max(trainer_versions(host_farm)) > before_restart, 180, "a version after the restart", host_farm.logs
    )
    verified = host_farm.cli("trainer", "policy", "verify")
    assert verified.returncode == 0, verified.stdout  # the kill left no half-published version
    for host in WORKER_HOSTS:
        cache = CheckpointRegistry(host_farm.home(host) / "checkpoints")
        fetched = cache.published_versions()
        assert len(fetched) >= 2 and all(cache.inspect(v).ok for v in fetched), (host, fetched)
    assert host_farm.cli("trainer", "train", "stop", "--timeout", "60").returncode == 0


def plain_redis_url(farm: HostFarm) -> str:
    return farm.redis.url().split("?", 1)[0].replace("rediss://", "redis://", 1)


def test_a_worker_refused_by_a_service_exits_with_one_line(host_farm: HostFarm) -> None:
    cases = [
        ({"VERIFARM_REDIS_URL": host_farm.redis.url(password="wrong-redis-pw")}, "Redis broker", "credentials"),
        ({"VERIFARM_DATABASE_URL": host_farm.postgres.url(password="wrong-pg-pw")}, "store", "credentials"),
        # Without TLS both services turn the worker away too.
        ({"VERIFARM_REDIS_URL": plain_redis_url(host_farm)}, "Redis broker", "reach"),
        ({"VERIFARM_DATABASE_URL": host_farm.postgres.url().replace("require", "disable")}, "store", "no encryption"),
        # A registry server that is not there (the trainer host answers nothing on port 1).
        ({"VERIFARM_REGISTRY_URL": f"http://{host_farm.host('trainer').address}:1"}, "checkpoint registry", "reach"),
    ]
    for overrides, service, reason in cases:
        done = host_farm.cli("worker-a", "workers", "start", "-c", "1", timeout=120, **overrides)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, (overrides, done.stderr)
        assert service in lines[0] and reason in lines[0], lines[0]
        for secret in ("wrong-redis-pw", "wrong-pg-pw", host_farm.redis.password, host_farm.postgres.password):
            assert secret not in done.stderr and secret not in done.stdout


FAULT_TASKS, FAULT_BATCH = 24, 3


def fault_spec(farm: HostFarm, name: str) -> str:
    """A campaign whose batches take a second or two: version 1 (random weights) samples to the token limit,
    where a trained version stops early and a batch would be over before a fault could hit it."""
    return write_spec(farm, name, policy=1, tasks=FAULT_TASKS, batch_size=FAULT_BATCH, sampling={"max_new_tokens": 96})


def batches_succeeded(farm: HostFarm, campaign_id: str) -> int:
    pattern = re.compile(rf"\[{re.escape(campaign_id)}:\d+\] succeeded")
    return sum(len(pattern.findall(log_text(farm, host))) for host in WORKER_HOSTS)


def start_fault_campaign(farm: HostFarm, name: str, ready: Callable[[], bool], what: str) -> str:
    """Submit a fault campaign and return as soon as `ready()` holds, while batches remain to be run.

    The submitting command runs in the background: on a busy machine its exit takes seconds, in which a
    campaign of short batches could finish before the fault."""
    campaign_id = f"{name}-1"
    submit = farm.start(
        "trainer", f"submit-{name}.log", "campaign", "submit", fault_spec(farm, name), "--id", campaign_id
    )

    def ready_or_refused() -> bool:
        if submit.poll() not in (None, 0):
            pytest.fail(f"campaign submit failed\n{log_text(farm, 'trainer', f'submit-{name}.log')}")
        return ready()

    wait_until(ready_or_refused, 180, what, farm.logs)
    assert batches_succeeded(farm, campaign_id) < FAULT_TASKS // FAULT_BATCH, "the campaign ended before the fault"
    return campaign_id


def start_and_wait_for_progress(farm: HostFarm, name: str) -> str:
    """A fault campaign whose first batch is stored."""
    return start_fault_campaign(farm, name, lambda: batches_succeeded(farm, f"{name}-1") > 0, f"{name} to start")


def test_cutting_a_workers_link_mid_batch_loses_and_duplicates_nothing(host_farm: HostFarm, worker_pools) -> None:
    log = host_farm.home("worker-a") / "workers.log"
    offset = len(log.read_bytes())

    def worker_a_mid_batch() -> bool:
        text = log.read_bytes()[offset:].decode(errors="replace")
        return text.count(" received") > text.count(" succeeded")

    campaign_id = start_fault_campaign(host_farm, "cut", worker_a_mid_batch, "worker-a to take a batch")
    host_farm.network.cut("worker-a")
    try:
        # worker-b finishes the campaign alone, worker-a's batch included once its visibility timeout passes.
        state = host_farm.wait_complete(campaign_id, 300)
    finally:
        host_farm.network.restore("worker-a")
    assert state["state"] == "done"
    # Back on the network, worker-a finishes the batch it held: its records are already there, none is added.
    wait_until(lambda: "worker-a" in host_farm.workers_answering(), 180, "worker-a to come back", host_farm.logs)
    assert_every_record_once(host_farm, campaign_id, FAULT_TASKS, 2)


def test_a_postgresql_restart_during_a_campaign_loses_and_duplicates_nothing(host_farm: HostFarm, worker_pools):
    campaign_id = start_and_wait_for_progress(host_farm, "pgrestart")
    host_farm.postgres.stop()
    host_farm.postgres.start()
    assert host_farm.wait_complete(campaign_id, 300)["state"] == "done"
    assert_every_record_once(host_farm, campaign_id, FAULT_TASKS, 2)


def test_a_redis_restart_with_its_data_loses_and_duplicates_nothing(host_farm: HostFarm, worker_pools) -> None:
    campaign_id = start_and_wait_for_progress(host_farm, "redisrestart")
    host_farm.redis.stop()
    host_farm.redis.start()
    assert host_farm.wait_complete(campaign_id, 300)["state"] == "done"
    assert_every_record_once(host_farm, campaign_id, FAULT_TASKS, 2)
    wait_until(lambda: set(WORKER_HOSTS) <= host_farm.workers_answering(), 120, "both pools after the restart")


def test_no_password_reaches_a_log(host_farm: HostFarm) -> None:
    logs = host_farm.logs(tail=None)
    assert "broker rediss://verifarm:***@" in logs  # `workers start` names its services, redacted
    assert host_farm.redis.password not in logs and host_farm.postgres.password not in logs
