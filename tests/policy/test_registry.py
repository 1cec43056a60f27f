"""Checkpoint registry: monotonic versions, checksums verified on load, atomic publish."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
import torch

from verifarm.policy.model import build_model
from verifarm.policy.registry import (
    MANIFEST_NAME,
    CheckpointRegistry,
    CorruptCheckpoint,
    NoCheckpoint,
)
from verifarm.policy.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_model("tiny", vocab_size=len(tokenizer))


def _weights_file(path: Path) -> Path:
    files = sorted(path.glob("*.safetensors"))
    assert files, f"no safetensors in {path}"
    return files[0]


def _flip_one_bit(file: Path, offset_from_end: int = 64) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    file.write_bytes(bytes(data))


def test_publish_and_load_round_trip(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    assert registry.latest_version() is None
    with pytest.raises(NoCheckpoint):
        registry.load()

    version = registry.publish(model, tokenizer, {"step": 7, "parent_version": None})
    assert version == 1
    assert registry.path(1).name == "v000001"
    assert (registry.path(1) / "config.json").is_file()
    assert (registry.path(1) / MANIFEST_NAME).is_file()

    loaded = registry.load()
    assert loaded.version == 1
    assert loaded.metadata == {"step": 7, "parent_version": None}
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor, msg=name)
    text = "123+456=?\n"
    assert loaded.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]

    info = registry.versions()[0]
    assert info.ok and info.checksum and info.created_at


def test_versions_are_monotonic(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    assert [registry.publish(model, tokenizer, {"step": i}) for i in range(3)] == [1, 2, 3]
    assert registry.latest_version() == 3
    assert registry.newer_than(1) == 3
    assert registry.newer_than(3) is None
    assert registry.newer_than(None) == 3


def test_flipped_bit_is_refused_and_previous_served(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    registry.publish(model, tokenizer, {"step": 1})
    registry.publish(model, tokenizer, {"step": 2})
    assert registry.latest_version() == 2

    _flip_one_bit(_weights_file(registry.path(2)))

    with pytest.raises(CorruptCheckpoint, match=r"v2 .*SHA-256 mismatch in model.*safetensors"):
        registry.load(2)
    assert registry.latest_version() == 1
    assert registry.newer_than(1) is None  # a corrupt newer version is no reason to reload
    fallback = registry.load()
    assert fallback.version == 1
    assert fallback.metadata == {"step": 1}
    assert [info.ok for info in registry.versions()] == [True, False]


def test_tampered_manifest_and_extra_files_are_refused(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    registry.publish(model, tokenizer)
    registry.publish(model, tokenizer)
    registry.publish(model, tokenizer)

    # Rewriting a file's recorded hash without fixing the content checksum is caught.
    manifest_path = registry.path(2) / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["config.json"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    # A file slipped in after publishing is caught too.
    (registry.path(3) / "extra.bin").write_bytes(b"surprise")

    assert not registry.inspect(2).ok
    assert "unexpected file extra.bin" in registry.inspect(3).problems
    assert registry.latest_version() == 1
    with pytest.raises(CorruptCheckpoint):
        registry.load(3)


def test_half_written_temp_dir_is_ignored(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    registry.publish(model, tokenizer)
    # What a publisher killed mid-save leaves behind: a temp folder with partial weights, no manifest.
    partial = tmp_path / ".tmp-crashed"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\x00" * 100)
    # A version folder without a manifest (e.g. copied by hand) is not good either.
    (tmp_path / "v000002").mkdir()
    (tmp_path / "v000002" / "config.json").write_text("{}")

    assert registry.published_versions() == [1, 2]
    assert registry.latest_version() == 1
    assert registry.load().version == 1
    # The next publish skips the taken number instead of overwriting it.
    assert registry.publish(model, tokenizer) == 3

    os.utime(partial, (0, 0))
    assert registry.clean_stale_temp(older_than_seconds=60) == [partial]
    assert not partial.exists()


def test_failed_save_leaves_no_version(tmp_path, model, tokenizer):
    class ExplodingTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    registry = CheckpointRegistry(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        registry.publish(model, ExplodingTokenizer())
    assert registry.published_versions() == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_metadata_must_be_json(tmp_path, model, tokenizer):
    registry = CheckpointRegistry(tmp_path)
    with pytest.raises(ValueError, match="JSON"):
        registry.publish(model, tokenizer, {"loss": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="positive integer"):
        registry.path(0)


def _publish_in_child(root: str, preset_vocab: int, queue) -> None:
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    model = build_model("tiny", vocab_size=preset_vocab)
    queue.put(CheckpointRegistry(root).publish(model, tokenizer, {"pid": os.getpid()}))


def test_concurrent_publishers_get_distinct_versions(tmp_path, tokenizer):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_publish_in_child, args=(str(tmp_path), len(tokenizer), queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    versions = sorted(queue.get(timeout=5) for _ in workers)
    assert versions == [1, 2, 3]
    registry = CheckpointRegistry(tmp_path)
    assert all(info.ok for info in registry.versions())
    pids = {info.metadata["pid"] for info in registry.versions()}
    assert len(pids) == 3


def test_cli_init_ls_verify(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from verifarm.policy_cli import app

    monkeypatch.setenv("VERIFARM_HOME", str(tmp_path / "home"))  # no rollout store there: ls shows no metrics
    root = tmp_path / "checkpoints"
    runner = CliRunner()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("1+2=?\nAnswer: 3\n\n2+2=?\nAnswer: 4\n")
    result = runner.invoke(
        app, ["init", "--root", str(root), "--corpus", str(corpus), "--pretrain-seconds", "2", "--batch-size", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "published v1" in result.output
    registry = CheckpointRegistry(root)
    assert registry.load().metadata["source"] == "pretrained"
    assert registry.load().metadata["documents"] == 2

    from verifarm.cli import app as root_app

    result = runner.invoke(root_app, ["policy", "init", "--root", str(root)])
    assert result.exit_code == 1 and "already holds versions" in result.stderr

    result = runner.invoke(app, ["ls", "--root", str(root)])
    assert result.exit_code == 0 and "v1" in result.output and "ok" in result.output

    assert runner.invoke(app, ["verify", "--root", str(root)]).exit_code == 0
    _flip_one_bit(_weights_file(registry.path(1)))
    result = runner.invoke(app, ["verify", "--root", str(root)])
    assert result.exit_code == 1 and "CORRUPT" in result.output and "SHA-256 mismatch" in result.output
    assert "CORRUPT" in runner.invoke(app, ["ls", "--root", str(root)]).output
