"""The farm on separate network hosts: workers on two hosts, a trainer on a third, services on a fourth."""

from __future__ import annotations

import pytest
import yaml

from tests.multihost.conftest import WORKER_HOSTS, HostFarm, wait_until
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


def assert_every_record_once(farm: HostFarm, campaign_id: str, tasks: int, samples: int) -> None:
    ids = farm.record_ids(campaign_id)
    expected = {record_id_for(campaign_id, t, s) for t in range(tasks) for s in range(samples)}
    assert len(ids) == len(expected) and set(ids) == expected


@pytest.fixture(scope="module")
def worker_pools(host_farm: HostFarm) -> dict:
    pools = {}
    for host in WORKER_HOSTS:
        pools[host] = host_farm.start(host, "workers.log", "workers", "start", "-c", "1", "-n", f"{host}@%h")
    wait_until(
        lambda: set(WORKER_HOSTS) <= host_farm.workers_answering(), 180, "both worker hosts to answer", host_farm.logs
    )
    return pools


def test_a_campaign_submitted_on_one_host_is_sampled_on_two_others(host_farm: HostFarm, worker_pools) -> None:
    submitted = host_farm.cli("trainer", "campaign", "submit", write_spec(host_farm, "spread"), "--id", "spread-1")
    assert submitted.returncode == 0, submitted.stderr
    state = host_farm.wait_complete("spread-1", 180)
    assert state["state"] == "done" and state["done"] == state["expected"] == 24
    assert_every_record_once(host_farm, "spread-1", 12, 2)
    for host in WORKER_HOSTS:
        assert "succeeded" in (host_farm.home(host) / "workers.log").read_text(), host_farm.logs()
    # Nothing of the farm leaked into another host's folders: each keeps its own home.
    assert not (host_farm.home("worker-a") / "rollouts.db").exists()
