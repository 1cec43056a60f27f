"""The farm's two samplers over real policies: a checkpoint loaded in this worker, and a completions endpoint.

Both hand the campaign's `SamplingParams` to the policy as they are; `rollout_batch` sees only `TaskSampler`.
"""

from __future__ import annotations

from collections.abc import Sequence

from verifarm.envs.base import Task
from verifarm.policy.http_policy import HttpPolicy
from verifarm.policy.params import SamplingParams
from verifarm.policy.sampling import Completion, LocalPolicy


class CheckpointSampler:
    """A checkpoint held in this process (`LocalPolicy`), sampled for the farm."""

    name = "checkpoint"  # recorded as each record's policy_name

    def __init__(self, policy: LocalPolicy) -> None:
        self.policy = policy

    @property
    def version(self) -> int:
        return self.policy.version

    def sample_tasks(
        self, tasks: list[Task], n: int, sampling: SamplingParams, seed: int
    ) -> Sequence[Sequence[Completion]]:
        return self.policy.sample_with([task.prompt for task in tasks], sampling, n, seed)


class EndpointSampler:
    """An OpenAI-compatible completions server (`HttpPolicy`); the server reports the version of each sample."""

    name = "endpoint"  # recorded as each record's policy_name

    def __init__(self, policy: HttpPolicy) -> None:
        self.policy = policy

    def sample_tasks(
        self, tasks: list[Task], n: int, sampling: SamplingParams, seed: int
    ) -> Sequence[Sequence[Completion]]:
        return self.policy.sample_with([task.prompt for task in tasks], sampling, n, seed)
