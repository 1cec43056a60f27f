"""Shared fixtures: a tiny policy pre-trained for a few seconds on 1-digit addition, published in a registry,
and a real store filled by real campaign rollouts of that policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from .trainer_helpers import TEST_CORPUS


@pytest.fixture(scope="session")
def pretrained_checkpoint(tmp_path_factory) -> Path:
    """A registry folder holding v1: the tiny MoE policy after ~25 s of pre-training on 1-digit sums."""
    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer
    from verifarm.policy.training import TrainConfig, pretrain
    from verifarm.trainer.corpus import build_corpus

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    model = build_model("tiny", len(tokenizer), seed=0)
    corpus = build_corpus(TEST_CORPUS)
    pretrain(
        model, tokenizer, corpus.train, TrainConfig(steps=120, batch_size=32, learning_rate=3e-3, max_length=64, seed=0)
    )
    root = tmp_path_factory.mktemp("pretrained") / "checkpoints"
    CheckpointRegistry(root).publish(model, tokenizer, {"source": "test-pretrain"})
    return root


@pytest.fixture
def farm_home(tmp_path, pretrained_checkpoint, monkeypatch) -> Path:
    """A fresh VERIFARM_HOME whose registry holds a copy of the pre-trained v1 and whose store is SQLite."""
    home = tmp_path / "home"
    shutil.copytree(pretrained_checkpoint, home / "checkpoints")
    monkeypatch.setenv("VERIFARM_HOME", str(home))
    monkeypatch.delenv("VERIFARM_DATABASE_URL", raising=False)
    monkeypatch.delenv("VERIFARM_CHECKPOINT_DIR", raising=False)
    return home
