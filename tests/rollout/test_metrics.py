"""Worker metrics count what a batch stored; the broker's queue depth is read at scrape time."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client import REGISTRY

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.metrics import QueueDepthCollector
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RecordFilter, RolloutStore

ENVS = [{"env_id": "verifarm/Addition-v0", "max_difficulty": 2}, {"env_id": "verifarm/MathAnswer-v0"}]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_counts_its_records_by_env_and_outcome(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "envs": ENVS,
            "tasks": 10,
            "samples_per_task": 2,
            "policy": "reference",
            "reference_corruption": 0.5,
            "batch_size": 10,
        }
    )
    keys = [(env["env_id"], outcome) for env in ENVS for outcome in ("pass", "fail", "infra_error")]
    before = {key: sample("verifarm_rollouts_total", {"env": key[0], "outcome": key[1]}) for key in keys}
    batches_before = sample("verifarm_sample_seconds_count", {"policy": "reference"})
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        store.create_campaign("m", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        rollout_batch(store, "m", spec, spec.batch_range(0), ReferencePolicy(0.5, 0), FamilyCache())
        stored = {key: store.count(RecordFilter(campaign_id="m", env_id=key[0], outcome=key[1])) for key in keys}
        # A redelivered batch stores nothing and counts nothing.
        rollout_batch(store, "m", spec, spec.batch_range(0), ReferencePolicy(0.5, 0), FamilyCache())
    after = {key: sample("verifarm_rollouts_total", {"env": key[0], "outcome": key[1]}) for key in keys}
    assert {key: after[key] - before[key] for key in keys} == stored and sum(stored.values()) == 20
    assert sample("verifarm_sample_seconds_count", {"policy": "reference"}) == batches_before + 1
    assert (
        sample("verifarm_verify_seconds_count", {"env": "verifarm/MathAnswer-v0"})
        >= stored[("verifarm/MathAnswer-v0", "pass")] + stored[("verifarm/MathAnswer-v0", "fail")]
    )


def test_queue_depth_is_read_from_redis_and_a_dead_broker_reports_nothing() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=11)
    key = "verifarm-test-queue-depth"
    client.delete(key)
    client.rpush(key, "a", "b", "c")
    try:
        families = QueueDepthCollector("redis://127.0.0.1:6379/11", [key]).collect()
        assert [(s.labels, s.value) for s in families[0].samples] == [({"queue": key}, 3.0)]
    finally:
        client.delete(key)
    assert QueueDepthCollector("redis://127.0.0.1:9/0", [key]).collect() == []
