"""The trainer under torchrun: 2 CPU processes (gloo) end with the parameters one process reaches on the same batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from verifarm.policy.registry import CheckpointRegistry
from verifarm.trainer.config import plain
from verifarm.trainer.daemon import _rows_of
from verifarm.trainer.distributed import DataParallel
from verifarm.trainer.post_data import PostBatch

from .trainer_helpers import run_campaign, small_trainer_config

CPU = torch.device("cpu")


def test_a_batch_is_dealt_by_whole_groups() -> None:
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4]
    shards = [DataParallel(rank, 2, CPU).shard(groups) for rank in (0, 1)]
    assert shards == [[0, 1, 4, 5, 8], [2, 3, 6, 7]]
    assert sorted(shards[0] + shards[1]) == list(range(len(groups)))
    # More ranks than groups: a rank may get none (it then steps with no weight).
    assert DataParallel(2, 3, CPU).shard([0, 0, 1, 1]) == []

    batch = PostBatch("grpo", list("abcd"), list("ABCD"), [1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1], [1, 1, 1, 1], [0] * 4)
    mine = _rows_of(batch, [2, 3])
    assert (mine.prompts, mine.rewards, mine.group_ids, mine.token_ids) == (["c", "d"], [1.0, 1.0], [1, 1], [])


def _train(home: Path, config: Path, ranks: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
    env.update({"VERIFARM_HOME": str(home), "OMP_NUM_THREADS": "1"})
    train = ["-m", "verifarm.cli", "train", "run", "--config", str(config), "--max-steps", "3", "--fresh"]
    if ranks == 1:
        command = [sys.executable, *train]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *train]
    # A run takes ~10 s; a hang at exit (a gloo teardown deadlock, fixed in DataParallel.close) fails in minutes.
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_two_processes_reach_the_parameters_of_one(tmp_path: Path, pretrained_checkpoint: Path) -> None:
    # The load-balancing term of a Mixture of Experts is balanced per rank's shard (not a token mean, so not
    # splittable); with it off, every other part of the loss is, and the runs must agree to float tolerance.
    home = tmp_path / "one"
    loaded = CheckpointRegistry(pretrained_checkpoint).load(1)
    loaded.model.config.router_aux_loss_coef = 0.0
    loaded.model.config.router_z_loss_coef = 0.0
    CheckpointRegistry(home / "checkpoints").publish(loaded.model, loaded.tokenizer, {"source": "test"})
    run_campaign(home, "ddp", tasks=6, samples=4, policy_version=1)
    shutil.copytree(home, tmp_path / "two")

    # A pre-training step, then post-training steps (rft or grpo) on records of the store.
    config = small_trainer_config(
        schedule={"pretrain_steps": 1, "posttrain_steps": 2, "mode_weights": {"rft": 1.0, "grpo": 1.0}},
        evaluate_on_publish=False,
        publish_every=3,
        batch_size=8,
    )
    config_file = tmp_path / "trainer.yaml"
    config_file.write_text(yaml.safe_dump(plain(config.to_dict())))

    one = _train(home, config_file, 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(tmp_path / "two", config_file, 2)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("published v2 at step 3") == 1  # rank 0 alone publishes

    single = CheckpointRegistry(home / "checkpoints").load(2)
    parallel = CheckpointRegistry(tmp_path / "two" / "checkpoints").load(2)
    kinds = single.metadata["kind_counts"]
    assert kinds == parallel.metadata["kind_counts"] and sum(kinds.values()) == 3 and len(kinds) >= 2
    assert single.metadata["cursor"] == parallel.metadata["cursor"]  # one data cursor, the same records read
    start = loaded.model.state_dict()
    expected, got = single.model.state_dict(), parallel.model.state_dict()
    moved = sum(not torch.equal(expected[name], start[name]) for name in expected)
    assert moved > len(expected) // 2  # the steps really trained
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
