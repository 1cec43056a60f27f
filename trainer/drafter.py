"""Keeping the drafter of speculative sampling in step with the policy the trainer publishes.

After each publish (with `TrainerConfig.refresh_drafter`), the new version's drafter is distilled on the
version's own completions of prompts from the evaluation suites' envs and difficulties, measured on other
held-out prompts, and published beside it; until then samplers use the previous version's drafter, which
only slows them. Prompt seeds sit apart from the evaluation's and from campaigns' usual seeds.
"""

from __future__ import annotations

from verifarm.envs.catalog import get_family
from verifarm.policy.drafter import DrafterConfig, refresh_drafter
from verifarm.trainer.config import TrainerConfig

DRAFTER_TRAIN_SEED_BASE = 2_000_000_000
DRAFTER_HELDOUT_SEED_BASE = 3_000_000_000


def drafter_prompts(config: TrainerConfig, per_difficulty: int, seed_base: int) -> list[str]:
    """Prompts of every evaluation suite's env at each of its difficulties."""
    prompts: list[str] = []
    for suite in config.evaluation.suites:
        family = get_family(suite.env_id, **suite.options)
        for difficulty in suite.difficulties:
            base = seed_base + config.seed + difficulty * 1_000_000
            prompts.extend(family.generate(seed=base + i, difficulty=difficulty).prompt for i in range(per_difficulty))
    return prompts


def refresh_published_drafter(
    registry, version: int, config: TrainerConfig, drafter: DrafterConfig = DrafterConfig()
) -> dict[str, float]:
    """Distill and publish the drafter of `version`; returns metrics for the store (`drafter_*`)."""
    metadata = refresh_drafter(
        registry,
        version,
        drafter_prompts(config, 64, DRAFTER_TRAIN_SEED_BASE),
        drafter_prompts(config, 8, DRAFTER_HELDOUT_SEED_BASE),
        drafter,
    )
    return {
        "drafter_acceptance_rate": float(metadata["acceptance_rate"]),
        "drafter_distill_kl": float(metadata["distill_kl"]),
    }
