"""The trainer's TensorBoard scalars and Prometheus gauges hold what its steps and publishes report."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import REGISTRY

from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.rollout.store import RolloutStore
from verifarm.trainer.daemon import ContinualTrainer
from verifarm.trainer.metrics import TelemetrySettings, TrainerTelemetry, read_scalars
from verifarm.trainer.schedule import ScheduleConfig

from .trainer_helpers import small_trainer_config


def test_steps_and_publishes_reach_tensorboard_and_prometheus(tmp_path):
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    registry = CheckpointRegistry(tmp_path / "checkpoints")
    registry.publish(build_model("tiny", len(tokenizer), seed=0), tokenizer, {"note": "random"})
    config = small_trainer_config(schedule=ScheduleConfig(pretrain_steps=1, posttrain_steps=0), publish_every=3)
    evaluations = iter([{"heldout_loss": 2.5}, {"heldout_loss": 2.25}])
    with RolloutStore(f"sqlite:///{tmp_path / 'rollouts.db'}") as store:
        trainer = ContinualTrainer(
            config, registry, store, tmp_path / "trainer" / "state", evaluate=lambda _trainer: next(evaluations)
        )
        steps = []
        published = trainer.run(max_steps=6, on_step=steps.append)
        trainer.telemetry.close()
        stored = {entry.step: entry.metrics for entry in store.metrics()}

    scalars = read_scalars(tmp_path / "trainer" / "tensorboard")
    assert [step for step, _ in scalars["train/loss/pretrain"]] == [r.step for r in steps] == list(range(6))
    assert [value for _, value in scalars["train/loss/pretrain"]] == pytest.approx([r.loss for r in steps])
    assert all(value > 0 for _, value in scalars["train/tokens_per_second"])
    assert scalars["train/schedule/pretrain"] == [(step, 1.0) for step in range(6)]
    # Each publish's metrics, as the store holds them, at the trainer step of the publish.
    assert scalars["eval/heldout_loss"] == [(p.step, stored[p.step]["heldout_loss"]) for p in published]
    assert [value for _, value in scalars["eval/heldout_loss"]] == [2.5, 2.25]
    assert scalars["eval/policy_version"] == [(p.step, float(p.version)) for p in published]

    assert REGISTRY.get_sample_value("verifarm_trainer_step") == 6
    assert REGISTRY.get_sample_value("verifarm_trainer_loss", {"mode": "pretrain"}) == pytest.approx(steps[-1].loss)
    assert REGISTRY.get_sample_value("verifarm_trainer_policy_version") == published[-1].version


def test_tensorboard_can_be_switched_off_and_wandb_needs_the_package(tmp_path, monkeypatch):
    assert TrainerTelemetry(tmp_path / "state", TelemetrySettings(tensorboard=False)).writer is None
    assert not (tmp_path / "tensorboard").exists()
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # as if not installed
    with pytest.raises(ValueError, match="wandb is not installed"):
        TrainerTelemetry(tmp_path / "state", TelemetrySettings(tensorboard=False, wandb=True))


def test_weights_and_biases_gets_the_same_scalars_where_installed(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from verifarm.trainer.daemon import StepReport

    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network: the run is written under tmp_path
    telemetry = TrainerTelemetry(tmp_path / "state", TelemetrySettings(tensorboard=False, wandb=True))
    from collections import Counter

    telemetry.on_step(
        StepReport(step=0, kind="rft", loss=1.25, samples=8, seconds=0.5, metrics={"tokens": 100.0}),
        Counter({"rft": 1}),
        version=3,
    )
    assert telemetry.wandb_run.summary["train/loss/rft"] == 1.25
    assert telemetry.wandb_run.summary["train/tokens_per_second"] == 200.0
    telemetry.close()
