"""Campaigns with `speculative: {drafter: auto|none, k: N}`: drafted rollouts are flagged in the store."""

from pathlib import Path

import pytest
import sqlalchemy

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RecordFilter, RolloutStore

MIX = [{"env_id": "verifarm/Addition-v0", "min_difficulty": 1}]


def campaign(store: RolloutStore, campaign_id: str, **fields):
    spec = parse_spec(
        {
            "envs": MIX,
            "tasks": 4,
            "samples_per_task": 2,
            "policy": 1,
            "sampling": {"temperature": 0.0, "max_new_tokens": 16},
            **fields,
        }
    )
    store.create_campaign(
        campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
    )
    return spec


def test_auto_drafter_flags_records_and_changes_no_greedy_completion(tmp_path: Path, checkpoint_root: Path) -> None:
    from verifarm.policy.model import build_drafter
    from verifarm.policy.registry import CheckpointRegistry

    source = CheckpointPolicySource(checkpoint_root)
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        plain = campaign(store, "plain")
        auto = campaign(store, "auto", speculative={"drafter": "auto", "k": 3})
        # No drafter published yet: auto samples plainly.
        rollout_batch(store, "auto", auto, range(2), source.sampler_for_spec(auto), FamilyCache())
        registry = CheckpointRegistry(checkpoint_root)
        registry.publish_drafter(1, build_drafter(registry.load(1).model), {"acceptance_rate": 0.5})
        rollout_batch(store, "auto", auto, range(2, 4), source.sampler_for_spec(auto), FamilyCache())
        rollout_batch(store, "plain", plain, range(4), source.sampler_for_spec(plain), FamilyCache())
        drafted = store.query(RecordFilter(campaign_id="auto"))
        undrafted = store.query(RecordFilter(campaign_id="plain"))
    assert [r.drafted for r in drafted] == [False] * 4 + [True] * 4
    assert all(r.drafted is False for r in undrafted)
    assert [r.completion for r in drafted] == [r.completion for r in undrafted]
    flat = [(x, y) for a, b in zip(drafted, undrafted) for x, y in zip(a.logprobs, b.logprobs, strict=True)]
    assert [x for x, _ in flat] == pytest.approx([y for _, y in flat], abs=1e-4)


def test_auto_drafter_needs_a_checkpoint_policy() -> None:
    with pytest.raises(ValueError, match="drafter: auto needs a checkpoint policy"):
        parse_spec({"envs": MIX, "tasks": 1, "policy": "reference", "speculative": {"drafter": "auto"}})
    with pytest.raises(ValueError, match="k"):
        parse_spec({"envs": MIX, "tasks": 1, "speculative": {"drafter": "auto", "k": 0}})
    assert parse_spec({"envs": MIX, "tasks": 1}).speculative.drafter == "none"


def test_a_store_made_before_the_drafted_column_gets_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with RolloutStore(url):
        pass
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("ALTER TABLE rollout_records DROP COLUMN drafted"))
    engine.dispose()
    with RolloutStore(url) as store:
        columns = {c["name"] for c in sqlalchemy.inspect(store.engine).get_columns("rollout_records")}
    assert "drafted" in columns
