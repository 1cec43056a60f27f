"""The policy a worker process samples with: loaded once, kept, and swapped between batches when a newer
checkpoint is published (for campaigns that ask for `latest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from verifarm.policy.drafter import PublishedDrafter
from verifarm.policy.http_policy import HttpPolicy
from verifarm.policy.remote_registry import open_registry
from verifarm.policy.sampling import LocalPolicy
from verifarm.rollout.campaign import CampaignSpec, EndpointSpec
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import TaskSampler
from verifarm.rollout.samplers import CheckpointSampler, EndpointSampler


class CheckpointPolicySource:
    """Keeps one loaded checkpoint per worker process; `sampler_for` is called before each batch."""

    def __init__(
        self, checkpoint_dir: Path, device: str = "cpu", torch_threads: int = 1, registry_url: str | None = None
    ) -> None:
        # With a registry URL, versions are fetched from the trainer and checkpoint_dir caches them.
        self.registry = open_registry(checkpoint_dir, registry_url)
        self.device = device
        self.torch_threads = torch_threads
        self._loaded: CheckpointSampler | None = None
        self._endpoints: dict[tuple[str, str], EndpointSampler] = {}
        self.drafters = PublishedDrafter(self.registry, device)
        self.loads = 0  # how many times a checkpoint was read from disk

    @property
    def loaded_version(self) -> int | None:
        return None if self._loaded is None else self._loaded.version

    def _load(self, version: int | None) -> CheckpointSampler:
        torch.set_num_threads(self.torch_threads)
        loaded = self.registry.load(version, device=self.device)
        self._loaded = CheckpointSampler(LocalPolicy(loaded.model, loaded.tokenizer, version=loaded.version))
        self.loads += 1
        return self._loaded

    def sampler(self, wanted: Literal["latest"] | int) -> CheckpointSampler:
        if wanted == "latest":
            if self._loaded is None:
                return self._load(None)  # the newest good version; corrupt newer ones are skipped
            newer = self.registry.newer_than(self._loaded.version)  # cheap poll: one directory listing
            return self._load(newer) if newer is not None else self._loaded
        if not isinstance(wanted, int) or wanted < 1:
            raise ValueError(f"a policy is 'latest', 'reference' or a version >= 1, got {wanted!r}")
        if self._loaded is None or self._loaded.version != wanted:
            return self._load(wanted)
        return self._loaded

    def endpoint_sampler(self, endpoint: EndpointSpec) -> EndpointSampler:
        """A sampler over a completions server; one client per endpoint, kept between batches."""
        key = (endpoint.base_url, endpoint.model)
        if key not in self._endpoints:
            policy = HttpPolicy(endpoint.base_url, endpoint.model, timeout_s=endpoint.timeout_s)
            self._endpoints[key] = EndpointSampler(policy)
        return self._endpoints[key]

    def sampler_for_spec(self, spec: CampaignSpec) -> TaskSampler:
        """The sampler a batch of this campaign uses: reference, endpoint, or a local checkpoint."""
        if spec.policy == "reference":
            return ReferencePolicy(p_corrupt=spec.reference_corruption, seed=spec.seed)
        if spec.endpoint is not None:
            return self.endpoint_sampler(spec.endpoint)
        sampler = self.sampler(spec.policy)
        self.drafters.attach(sampler.policy, spec.speculative.drafter == "auto", spec.speculative.k)
        return sampler
