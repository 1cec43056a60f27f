"""The trainer's drafter refresh: prompts from the evaluation suites, a drafter published beside the version."""

from pathlib import Path

from verifarm.policy.drafter import DrafterConfig
from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import TrainConfig
from verifarm.trainer.config import EvalConfig, EvalSuite, TrainerConfig
from verifarm.trainer.drafter import (
    DRAFTER_HELDOUT_SEED_BASE,
    DRAFTER_TRAIN_SEED_BASE,
    drafter_prompts,
    refresh_published_drafter,
)


def test_refresh_publishes_the_drafter_of_the_new_version(tmp_path: Path) -> None:
    config = TrainerConfig(
        evaluation=EvalConfig(suites=(EvalSuite("verifarm/Addition-v0", (1, 2)),)), refresh_drafter=True
    )
    train = drafter_prompts(config, 4, DRAFTER_TRAIN_SEED_BASE)
    heldout = drafter_prompts(config, 4, DRAFTER_HELDOUT_SEED_BASE)
    assert len(train) == 8 and not set(train) & set(heldout)
    tokenizer = build_tokenizer()
    registry = CheckpointRegistry(tmp_path)
    registry.publish(build_model("tiny", len(tokenizer)), tokenizer)
    quick = DrafterConfig(max_new_tokens=12, samples_per_prompt=1, train=TrainConfig(steps=3, batch_size=4))
    metrics = refresh_published_drafter(registry, 1, config, quick)
    info = registry.drafter_for(1)
    assert not info.stale and metrics["drafter_acceptance_rate"] == info.acceptance_rate
