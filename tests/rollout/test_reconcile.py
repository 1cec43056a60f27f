"""The sweep that re-enqueues batches a broker lost, against a real private Redis and a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.app import create_app
from verifarm.rollout.broker import farm_of, queue_keys
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.reconcile import SWEEP_LOCK, SWEEPS_PER_CAMPAIGN, UNACKED_KEY, sweep
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.submission import submit
from verifarm.settings import FarmTuning, Settings

SPEC = parse_spec(
    {
        "name": "lost",
        "envs": [{"env_id": "verifarm/Addition-v0", "max_difficulty": 2}],
        "tasks": 10,
        "samples_per_task": 2,
        "batch_size": 3,
        "policy": "reference",
    }
)
LATER = datetime.now(timezone.utc) + timedelta(hours=1)  # every campaign is old enough to sweep


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[FarmConfig]:
    server = EmbeddedRedis(tmp_path / "broker")
    url, pid = server.start()
    try:
        yield FarmConfig(
            broker_url=url,
            store_url=f"sqlite:///{tmp_path / 'rollouts.db'}",
            checkpoint_dir=tmp_path / "checkpoints",
            tuning=FarmTuning(reconcile_interval_s=1),
        )
    finally:
        server.stop(pid)


def queued_batches(client: redis.Redis) -> list[int]:
    """Batch indices of the messages waiting on the queue's priority lists (task ids are `<campaign>:<batch>`)."""
    bodies = [raw for key in queue_keys() for raw in client.lrange(key, 0, -1)]
    return sorted(int(json.loads(body)["headers"]["id"].rsplit(":", 1)[1]) for body in bodies)


def lose_queue(client: redis.Redis) -> None:
    """What a broker restart without persistence does to waiting batches."""
    for key in queue_keys():
        client.delete(key)


def roll_out(farm: FarmConfig, campaign_id: str, batches: list[int]) -> None:
    with RolloutStore(farm.store_url) as store:
        for batch in batches:
            rollout_batch(store, campaign_id, SPEC, SPEC.batch_range(batch), ReferencePolicy(), FamilyCache(), 0)


def fresh_lock(client: redis.Redis) -> None:
    client.delete(SWEEP_LOCK)  # the next sweep is a new interval


def test_lost_batches_are_enqueued_again_and_only_those(farm: FarmConfig) -> None:
    client = redis.Redis.from_url(farm.broker_url)
    submit(SPEC, farm, "lost-1")
    assert queued_batches(client) == [0, 1, 2, 3]
    lose_queue(client)
    roll_out(farm, "lost-1", [0, 2])  # two batches had finished before the loss

    assert sweep(farm, queue_keys(), now=LATER) == {"lost-1": 2}
    assert queued_batches(client) == [1, 3]


def test_nothing_is_enqueued_while_the_broker_holds_a_batch(farm: FarmConfig) -> None:
    client = redis.Redis.from_url(farm.broker_url)
    submit(SPEC, farm, "busy-1")
    assert sweep(farm, queue_keys(), now=LATER) == {}  # queued: in flight
    lose_queue(client)
    client.hset(UNACKED_KEY, "some-delivery-tag", "[]")  # one delivered, not acknowledged: still in flight
    fresh_lock(client)
    assert sweep(farm, queue_keys(), now=LATER) == {}
    assert queued_batches(client) == []


def test_young_cancelled_and_complete_campaigns_are_left_alone(farm: FarmConfig) -> None:
    client = redis.Redis.from_url(farm.broker_url)
    for campaign_id in ("young-1", "cancelled-1", "complete-1"):
        submit(SPEC, farm, campaign_id)
    lose_queue(client)
    roll_out(farm, "complete-1", [0, 1, 2, 3])
    with RolloutStore(farm.store_url) as store:
        store.set_cancelled("cancelled-1")
    # Just submitted: its batches may still be on their way to the broker.
    assert sweep(farm, queue_keys(), now=datetime.now(timezone.utc)) == {}
    fresh_lock(client)
    assert sweep(farm, queue_keys(), now=LATER) == {"young-1": 4}


def test_one_sweeper_per_interval_and_a_bounded_number_of_sweeps(farm: FarmConfig) -> None:
    client = redis.Redis.from_url(farm.broker_url)
    submit(SPEC, farm, "failing-1")
    for sweep_number in range(SWEEPS_PER_CAMPAIGN + 2):
        lose_queue(client)  # as if its batches kept failing and were given up on
        fresh_lock(client)
        expected = {"failing-1": 4} if sweep_number < SWEEPS_PER_CAMPAIGN else {}
        assert sweep(farm, queue_keys(), now=LATER) == expected
        assert sweep(farm, queue_keys(), now=LATER) == {}  # a second worker in the same interval does nothing


def test_the_sweep_interval_travels_to_worker_processes_and_bad_values_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERIFARM_FARM_RECONCILE_INTERVAL_S", "7")
    farm = FarmConfig.from_settings(Settings(home=tmp_path), broker_url="redis://127.0.0.1:1/0")
    assert farm.tuning.reconcile_interval_s == 7
    # Worker processes receive the farm through the Celery app's config, not through the environment.
    assert farm_of(create_app(farm)).tuning.reconcile_interval_s == 7
    monkeypatch.setenv("VERIFARM_FARM_RECONCILE_INTERVAL_S", "0")
    with pytest.raises(ValidationError, match="reconcile_interval_s"):
        FarmConfig.from_settings(Settings(home=tmp_path), broker_url="redis://127.0.0.1:1/0")
