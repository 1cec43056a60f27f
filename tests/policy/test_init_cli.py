"""`verifarm policy init`: pre-trains on the built-in worked arithmetic unless --random, with progress lines."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.policy.registry import CheckpointRegistry


def test_init_pre_trains_on_the_built_in_corpus_and_reports_progress(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VERIFARM_HOME", str(tmp_path / "home"))
    root = tmp_path / "checkpoints"
    result = CliRunner().invoke(
        app, ["policy", "init", "--root", str(root), "--pretrain-steps", "3", "--batch-size", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "published v1" in result.stdout
    progress = [line for line in result.stderr.splitlines() if line.startswith("pre-training ")]
    assert progress and progress[-1].startswith("pre-training 3/3") and "loss" in progress[-1]
    assert "tokens/s" in progress[-1] and "\x1b" not in result.stderr  # plain lines: not a terminal
    metadata = CheckpointRegistry(root).load().metadata
    assert metadata["source"] == "pretrained" and metadata["corpus"].startswith("built-in")
    assert metadata["training_step"] == 3 and metadata["documents"] > 1000


def test_init_random_publishes_untrained_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VERIFARM_HOME", str(tmp_path / "home"))
    root = tmp_path / "checkpoints"
    result = CliRunner().invoke(app, ["policy", "init", "--root", str(root), "--random"])
    assert result.exit_code == 0, result.output
    assert "pre-train" not in result.output
    assert CheckpointRegistry(root).load().metadata["source"] == "random-init"
