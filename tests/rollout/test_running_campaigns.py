"""The index of running campaigns the reconcile sweep reads instead of every campaign's counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.reconcile import lost_campaigns
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.running_campaigns import RunningCampaigns
from verifarm.rollout.store import RolloutStore

SPEC = parse_spec(
    {"envs": [{"env_id": "verifarm/Addition-v0"}], "tasks": 4, "samples_per_task": 2, "policy": "reference"}
)
LATER = datetime.now(timezone.utc) + timedelta(hours=1)


def create(store: RolloutStore, campaign_id: str) -> None:
    store.create_campaign(campaign_id, "c", SPEC.model_dump(mode="json"), SPEC.tasks, SPEC.samples_per_task, 5)


def test_done_campaigns_leave_the_sweep_for_good(store: RolloutStore) -> None:
    for campaign_id in ("done", "running", "cancelled"):
        create(store, campaign_id)
    rollout_batch(store, "done", SPEC, range(4), ReferencePolicy(), FamilyCache(), 0)
    rollout_batch(store, "running", SPEC, range(2), ReferencePolicy(), FamilyCache(), 0)
    store.set_cancelled("cancelled")
    index = RunningCampaigns(store.engine, store.campaigns)
    assert index.candidates(LATER) == ["done", "running"]
    assert index.candidates(datetime.now(timezone.utc) - timedelta(hours=1)) == []  # too young

    assert lost_campaigns(store, LATER) == ["running"]
    # The sweep found "done" complete and remembered it: later sweeps no longer count its records.
    assert index.candidates(LATER) == ["running"]
    rollout_batch(store, "running", SPEC, range(2, 4), ReferencePolicy(), FamilyCache(), 0)
    assert lost_campaigns(store, LATER) == [] and index.candidates(LATER) == []

    # Cancelling is not final: a campaign taken back out of cancellation is a candidate again.
    store.set_cancelled("cancelled", False)
    assert lost_campaigns(store, LATER) == ["cancelled"]
