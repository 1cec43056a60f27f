"""Drafters: distilled from a policy version, published beside it, refreshed when the policy moves."""

import json

import pytest

from verifarm.policy.drafter import DrafterConfig, acceptance_rate, distill_drafter, refresh_drafter
from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.registry import MANIFEST_NAME, CheckpointRegistry, NoCheckpoint
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.training import TrainConfig

TRAIN_PROMPTS = [f"{a}+{b}=?\n" for a in range(10, 40) for b in (3, 7)]
HELDOUT_PROMPTS = [f"{a}+5=?\n" for a in range(50, 66)]
QUICK = DrafterConfig(
    max_new_tokens=24,
    samples_per_prompt=2,
    train=TrainConfig(steps=60, batch_size=16, learning_rate=3e-3, warmup_steps=5),
)


@pytest.fixture(scope="module")
def model(tokenizer):
    return build_model("tiny", len(tokenizer), seed=0).eval()


def test_distillation_raises_the_acceptance_rate_on_heldout_prompts(model, tokenizer):
    policy = LocalPolicy(model, tokenizer, 1)
    before = acceptance_rate(policy, build_drafter(model), HELDOUT_PROMPTS, max_new_tokens=24)
    drafter, metrics = distill_drafter(policy, TRAIN_PROMPTS, QUICK)
    after = acceptance_rate(policy, drafter, HELDOUT_PROMPTS, max_new_tokens=24)
    assert metrics["steps"] == 60 and after > before + 0.02, (before, after)
    assert sum(p.numel() for p in drafter.parameters()) < 0.2 * sum(p.numel() for p in model.parameters())


def test_drafter_is_published_beside_its_version_and_refreshed_when_the_policy_moves(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    registry.publish(model, tokenizer, {"parent_version": None})
    assert registry.drafter_for(1) is None
    with pytest.raises(NoCheckpoint, match="no drafter"):
        registry.load_drafter(1)

    metadata = refresh_drafter(registry, 1, TRAIN_PROMPTS, HELDOUT_PROMPTS, QUICK)
    info = registry.drafter_for(1)
    assert info.ok and not info.stale and info.path == tmp_path / "drafters" / "v000001"
    assert 0 < info.acceptance_rate == metadata["acceptance_rate"] <= 1
    assert info.metadata["policy_checksum"] == registry.inspect(1).checksum
    assert registry.inspect(1).ok  # the version's own folder and manifest are untouched

    # The policy moves on: until its drafter is refreshed, v1's serves it, stale but exact.
    moved = build_model("tiny", len(tokenizer), seed=7).eval()
    registry.publish(moved, tokenizer, {"parent_version": 1})
    stale = registry.drafter_for(2)
    assert stale.stale and stale.distilled_from == 1
    drafter, _ = registry.load_drafter(2)
    plain = LocalPolicy(moved, tokenizer, 2).sample(HELDOUT_PROMPTS[:6], n=2, temperature=0, max_new_tokens=24)
    drafted = LocalPolicy(moved, tokenizer, 2, drafter=drafter).sample(
        HELDOUT_PROMPTS[:6], n=2, temperature=0, max_new_tokens=24
    )
    assert [[c.token_ids for c in row] for row in drafted] == [[c.token_ids for c in row] for row in plain]

    refreshed = refresh_drafter(registry, 2, TRAIN_PROMPTS, HELDOUT_PROMPTS, QUICK)
    assert refreshed["warm_start_from"] == 1
    fresh = registry.drafter_for(2)
    assert not fresh.stale and registry.drafter_versions() == [1, 2]


def test_a_corrupt_drafter_is_skipped_for_an_older_intact_one(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    for _ in range(2):
        registry.publish(model, tokenizer)
    for version in (1, 2):
        registry.publish_drafter(version, build_drafter(model), {"acceptance_rate": 0.5})
    weights = next((tmp_path / "drafters" / "v000002").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"garbage!")
    info = registry.drafter_for(2)
    assert info.distilled_from == 1 and info.stale
    manifest = json.loads((tmp_path / "drafters" / "v000001" / MANIFEST_NAME).read_text())
    assert manifest["metadata"]["policy_version"] == 1


def test_a_drafter_for_a_missing_version_is_refused(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    registry.publish(model, tokenizer)
    with pytest.raises(KeyError, match="no version 3"):
        registry.publish_drafter(3, build_drafter(model))
    with pytest.raises(ValueError, match="layers"):
        build_drafter(model, num_layers=9)
    assert not (tmp_path / "drafters").exists()


def test_policy_drafter_command_publishes_and_ls_shows_the_pair(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from verifarm.policy_cli import app

    monkeypatch.setenv("COLUMNS", "200")
    root = ["--root", str(tmp_path)]
    runner = CliRunner()
    # A briefly trained policy is enough: the command's output and the pair are under test, not the acceptance.
    assert runner.invoke(app, ["init", "--pretrain-steps", "20", "--batch-size", "8", *root]).exit_code == 0
    result = runner.invoke(
        app, ["drafter", "--prompts", "16", "--heldout", "4", "--steps", "5", "--max-new-tokens", "12", *root]
    )
    assert result.exit_code == 0, result.output
    assert "published the drafter of v1: acceptance" in result.output
    listing = runner.invoke(app, ["ls", *root]).output
    rate = CheckpointRegistry(tmp_path).drafter_for(1).acceptance_rate
    assert "drafter" in listing and f"v1 {rate:.0%}" in listing
    bad = runner.invoke(app, ["drafter", "--layers", "0", *root])
    assert bad.exit_code == 2 and CheckpointRegistry(tmp_path).drafter_versions() == [1]
