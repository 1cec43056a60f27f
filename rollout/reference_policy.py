"""A stand-in policy for load tests of the farm only: it answers with the env's reference completion.

With probability `p_corrupt` a sample is corrupted (its last digit changed, or the text cut in half when it has
no digit) so that the verifier also sees failures. It learns nothing and proves nothing about learning; its
records carry `policy_name="reference"` and no policy version, so training data never mistakes them for a model's.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from verifarm.envs.base import Task


@dataclass(frozen=True)
class SampledText:
    """One sampled completion, shaped like the policy's `Completion`."""

    text: str
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    policy_version: int | None = None


def corrupt(text: str, rng: random.Random) -> str:
    """A near miss of `text`: its last digit replaced by another digit, or its first half if it has none."""
    for position in range(len(text) - 1, -1, -1):
        if text[position].isdigit():
            wrong = str((int(text[position]) + rng.randint(1, 9)) % 10)
            return text[:position] + wrong + text[position + 1 :]
    return text[: len(text) // 2]


@dataclass(frozen=True)
class ReferencePolicy:
    p_corrupt: float = 0.0
    seed: int = 0
    name: str = field(default="reference", init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_corrupt <= 1.0:
            raise ValueError(f"p_corrupt must lie in [0, 1], got {self.p_corrupt}")

    @property
    def version(self) -> None:
        return None

    def sample_tasks(
        self, tasks: list[Task], n: int, sampling: object = None, seed: int | None = None
    ) -> list[list[SampledText]]:
        """n answers per task; which ones are corrupted is a pure function of (seed, task, prompt, sample index),
        so a redelivered batch produces the same records. Sampling settings and the batch seed do not apply."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        out = []
        for task in tasks:
            samples = []
            for index in range(n):
                # The prompt is in the key so that a multi-turn follow-up (a new prompt) is a new draw.
                prompt_key = hashlib.sha256(task.prompt.encode()).hexdigest()[:16]
                rng = random.Random(f"reference:{self.seed}:{task.task_id}:{prompt_key}:{index}")
                text = corrupt(task.reference, rng) if rng.random() < self.p_corrupt else task.reference
                samples.append(SampledText(text=text))
            out.append(samples)
        return out
