"""Campaign state seen by `campaign status` / `watch` / `cancel`: the rate over the campaign's wall time, a
finished campaign that cannot be cancelled, and a Celery task registered once however many apps exist."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import CampaignFinished, cancel, parse_spec, status_from_store
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore

SPEC = {
    "name": "rate",
    "envs": [{"env_id": "verifarm/Addition-v0"}],
    "tasks": 8,
    "samples_per_task": 4,
    "batch_size": 8,
    "policy": "reference",
}


def test_rollouts_per_second_is_over_the_campaigns_wall_time(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    with RolloutStore(f"sqlite:///{tmp_path / 'scratch.db'}") as scratch:
        scratch.create_campaign("rate-1", spec.name, spec.model_dump(mode="json"), spec.tasks, 4, 5)
        rollout_batch(scratch, "rate-1", spec, range(spec.tasks), ReferencePolicy(0.0, 0), FamilyCache())
        records = scratch.query()
    with RolloutStore(f"sqlite:///{tmp_path / 'rollouts.db'}") as store:
        row = store.create_campaign("rate-1", spec.name, spec.model_dump(mode="json"), spec.tasks, 4, 5)
        # One batch stores all 32 records at one instant, 16 s after the campaign was submitted: 2 rollouts/s.
        # (The records' own time span is ~0 s, which is how a 64-rollout campaign once showed 1,862/s.)
        stored_at = row.created_at + timedelta(seconds=16)
        store.add_records([r.model_copy(update={"created_at": stored_at}) for r in records])
        state = status_from_store(store, "rate-1")
    assert state.state == "done" and state.done == 32
    assert state.rollouts_per_second == pytest.approx(2.0, rel=1e-6)


def test_a_finished_campaign_is_not_cancelled_and_a_running_one_is(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    url = f"sqlite:///{tmp_path / 'rollouts.db'}"
    with RolloutStore(url) as store:
        for campaign_id in ("done-1", "running-1"):
            store.create_campaign(campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, 4, 5)
        rollout_batch(store, "done-1", spec, range(spec.tasks), ReferencePolicy(0.0, 0), FamilyCache())
    with pytest.raises(CampaignFinished, match=r"already done .*nothing to cancel"):
        cancel("done-1", url)
    assert cancel("running-1", url).state == "cancelled"
    with RolloutStore(url) as store:
        assert status_from_store(store, "done-1").state == "done"


def test_creating_several_apps_registers_the_batch_task_once() -> None:
    from celery.exceptions import CDeprecationWarning  # noqa: F401  (celery's warnings module is loaded)

    from verifarm.rollout.app import TASK_NAME, create_app
    from verifarm.rollout.config import FarmConfig

    farm = FarmConfig(broker_url="redis://127.0.0.1:1/0", store_url="sqlite:///unused.db", checkpoint_dir=Path("c"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apps = [create_app(farm) for _ in range(3)]
        assert all(TASK_NAME in app.tasks for app in apps)  # finalizes each app
    assert not [w for w in caught if "DuplicateTaskName" in w.category.__name__], [str(w.message) for w in caught]
