"""Shared fixtures for the rollout tests: real stores on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from verifarm.rollout.store import RolloutStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rollouts.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[RolloutStore]:
    with RolloutStore(store_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def checkpoint_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding version 1 of the tiny preset with random weights (a real checkpoint), built once."""
    import torch

    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    root = tmp_path_factory.mktemp("template") / "checkpoints"
    CheckpointRegistry(root).publish(build_model("tiny", len(tokenizer), seed=0), tokenizer, {"note": "random"})
    return root


@pytest.fixture
def checkpoint_root(checkpoint_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the registry, free to publish into."""
    root = tmp_path / "checkpoints"
    shutil.copytree(checkpoint_template, root)
    return root


@pytest.fixture
def publish_tiny():
    """publish_tiny(root, seed) -> version: publish another tiny random policy, as the trainer would."""
    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer

    def publish(root: Path, seed: int) -> int:
        tokenizer = build_tokenizer()
        model = build_model("tiny", len(tokenizer), seed=seed)
        return CheckpointRegistry(root).publish(model, tokenizer, {"seed": seed})

    return publish
