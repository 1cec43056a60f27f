"""Campaigns rolled out in the calling process: the farm's own rollout function over a store and a registry, with no
broker and no worker pool (one machine, or a daemon that samples its own curriculum)."""

from __future__ import annotations

from pathlib import Path

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import CampaignSpec, CampaignStatus, new_campaign_id, status_from_store
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore


class InProcessCampaigns:
    """Runs each campaign's batches here; "latest" picks up versions published between batches."""

    def __init__(self, store: RolloutStore, checkpoint_dir: Path, torch_threads: int = 1) -> None:
        self.store = store
        self.policies = CheckpointPolicySource(Path(checkpoint_dir), torch_threads=torch_threads)
        self.families = FamilyCache()

    def run(self, spec: CampaignSpec) -> CampaignStatus:
        campaign_id = new_campaign_id(spec)
        self.store.create_campaign(
            campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
        )
        for batch in range(spec.num_batches):
            sampler = self.policies.sampler(spec.policy)
            rollout_batch(self.store, campaign_id, spec, list(spec.batch_range(batch)), sampler, self.families)
        return status_from_store(self.store, campaign_id)
