"""Helpers of the trainer tests: a real campaign rolled out without a broker, a small trainer config."""

from __future__ import annotations

from pathlib import Path

from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy
from verifarm.rollout.campaign import CampaignSpec
from verifarm.rollout.orchestration import roll_out_campaign
from verifarm.rollout.samplers import CheckpointSampler
from verifarm.rollout.store import RolloutStore
from verifarm.trainer.config import EvalConfig, EvalSuite, TrainerConfig
from verifarm.trainer.corpus import CorpusConfig
from verifarm.trainer.schedule import ScheduleConfig

ENV = "verifarm/Addition-v0"
TEST_CORPUS = CorpusConfig(seed=0, arithmetic_max_digits=1, arithmetic_documents=400, heldout_fraction=0.2)


def store_url(home: Path) -> str:
    return f"sqlite:///{home / 'rollouts.db'}"


def run_campaign(
    home: Path, name: str, tasks: int, samples: int, policy_version: int, seed: int = 0, max_digits: int = 1
) -> str:
    """A real campaign rolled out by the real rollout function (no broker), sampling the given version."""
    spec = CampaignSpec(
        name=name,
        envs=[{"env_id": ENV, "min_difficulty": 1, "max_difficulty": max_digits}],
        tasks=tasks,
        samples_per_task=samples,
        sampling={"temperature": 1.0, "max_new_tokens": 40},
        policy=policy_version,
        seed=seed,
        batch_size=8,
    )
    loaded = CheckpointRegistry(home / "checkpoints").load(policy_version)
    sampler = CheckpointSampler(LocalPolicy(loaded.model, loaded.tokenizer, version=loaded.version))
    campaign_id = f"{name}-{seed}"
    with RolloutStore(store_url(home)) as store:
        roll_out_campaign(store, spec, sampler, campaign_id)
    return campaign_id


def small_trainer_config(**overrides) -> TrainerConfig:
    values = dict(
        corpus=TEST_CORPUS,
        schedule=ScheduleConfig(pretrain_steps=1, posttrain_steps=2, mode_weights={"rft": 1.0, "grpo": 1.0}),
        evaluation=EvalConfig(
            suites=(EvalSuite(ENV, (1,)),),
            tasks_per_difficulty=8,
            k=2,
            samples=4,
            max_new_tokens=40,
            heldout_loss_documents=16,
        ),
        batch_size=8,
        max_seq_len=64,
        publish_every=4,
        staleness_bound=1,
        learning_rate=1e-3,
        torch_threads=1,
    )
    values.update(overrides)
    if isinstance(values["schedule"], dict):
        values["schedule"] = ScheduleConfig(**values["schedule"])
    return TrainerConfig(**values)
