"""The daemon trains from a real store written by real campaign rollouts, publishes loadable versions,
records their evaluation, skips stale records, and resumes exactly after SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.trainer.daemon import ContinualTrainer
from verifarm.trainer.schedule import ScheduleConfig

from .trainer_helpers import run_campaign, small_trainer_config, store_url


def make_trainer(home, config):
    return ContinualTrainer(
        config, CheckpointRegistry(home / "checkpoints"), RolloutStore(store_url(home)), home / "trainer" / "state"
    )


def test_trains_on_campaign_records_publishes_loadable_versions_and_records_metrics(farm_home):
    campaign = run_campaign(farm_home, "round1", tasks=16, samples=4, policy_version=1)
    with RolloutStore(store_url(farm_home)) as store:
        records = store.query(RecordFilter(campaign_id=campaign))
    passing = sum(r.passed for r in records)
    assert len(records) == 64 and passing > 0, "the pre-trained policy should solve some 1-digit sums"

    trainer = make_trainer(farm_home, small_trainer_config())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    published = trainer.run(until_idle=True)

    assert published and published[-1].version == trainer.version > 1
    assert trainer.kind_counts["pretrain"] > 0 and trainer.kind_counts["rft"] > 0
    assert trainer.cursor.store_after_seq is not None
    assert trainer.cursor.records_used + trainer.cursor.records_skipped_other == len(records)
    changed = any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert changed

    # A worker loads the newest version from the registry and samples with it.
    loaded = CheckpointRegistry(farm_home / "checkpoints").load(None)
    assert loaded.version == trainer.version and loaded.metadata["source"] == "trainer"
    completions = LocalPolicy(loaded.model, loaded.tokenizer, loaded.version).sample(
        ["3+4=?\n"], n=2, max_new_tokens=30
    )
    assert completions[0][0].policy_version == trainer.version

    with RolloutStore(store_url(farm_home)) as store:
        entries = store.metrics(trainer.version)
    assert entries, "the published version's evaluation is stored"
    metrics = entries[-1].metrics
    assert 0.0 <= metrics["Addition-v0/d1/pass@1"] <= 1.0
    assert 0.0 <= metrics["Addition-v0/d1/pass@2"] <= 1.0
    assert metrics["heldout_loss"] > 0 and metrics["records_used"] == trainer.cursor.records_used
    assert any(e.metrics.get("data_staleness_max", -1) >= 0 for e in store_entries(farm_home))

    # Started again, it resumes from its own state and finds nothing new to read.
    again = make_trainer(farm_home, small_trainer_config())
    assert again.resumed_from is not None and again.step_index == trainer.step_index
    assert again.cursor == trainer.cursor
    while again.next_kind() == "pretrain":
        again.step()
    assert again.step() is None, "every record was used once already"

    # A trainer state that no longer matches the checksum in the version's metadata is refused.
    state_file = farm_home / "trainer" / "state" / again.resumed_from
    state_file.write_bytes(state_file.read_bytes() + b"tampered")
    with pytest.raises(ValueError, match="SHA-256"):
        make_trainer(farm_home, small_trainer_config())


def test_stale_records_are_skipped(farm_home):
    run_campaign(farm_home, "old", tasks=8, samples=4, policy_version=1)
    registry = CheckpointRegistry(farm_home / "checkpoints")
    v1 = registry.load(1)
    registry.publish(v1.model, v1.tokenizer, {"source": "test"})  # v2
    registry.publish(v1.model, v1.tokenizer, {"source": "test"})  # v3: records of v1 are 2 versions old
    config = small_trainer_config(
        schedule=ScheduleConfig(0, 1, {"rft": 1.0}), staleness_bound=1, evaluate_on_publish=False
    )
    trainer = make_trainer(farm_home, config)
    assert trainer.version == 3
    assert trainer.step() is None
    assert trainer.cursor.records_skipped_stale == 32 and trainer.cursor.records_used == 0

    fresh = make_trainer(
        farm_home,
        small_trainer_config(schedule=ScheduleConfig(0, 1, {"rft": 1.0}), staleness_bound=2, evaluate_on_publish=False),
    )
    report = fresh.step()
    assert report is not None and report.metrics["data_staleness_max"] == 2.0


def store_entries(home):
    with RolloutStore(store_url(home)) as store:
        return store.metrics()


def _weights(home, version):
    return CheckpointRegistry(home / "checkpoints").load(version).model.state_dict()


@pytest.mark.slow
def test_sigkill_and_restart_resume_with_the_same_data_and_optimizer_state(farm_home, tmp_path):
    run_campaign(farm_home, "data", tasks=24, samples=4, policy_version=1)
    config = small_trainer_config(evaluate_on_publish=False, publish_every=3)
    config_path = tmp_path / "trainer.yaml"
    config.to_yaml(config_path)
    # An identical copy of the farm for the uninterrupted reference run.
    reference_home = tmp_path / "reference"
    shutil.copytree(farm_home, reference_home)
    target = 9

    # --until-idle: both runs stop at the same point if the data runs out before the target step.
    command = [
        sys.executable,
        "-m",
        "verifarm.trainer.cli",
        "run",
        "--config",
        str(config_path),
        "--until-step",
        str(target),
        "--until-idle",
    ]
    env = {**os.environ, "VERIFARM_HOME": str(farm_home)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    registry = CheckpointRegistry(farm_home / "checkpoints")
    deadline = time.monotonic() + 120
    while (registry.latest_published() or 0) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stdout.read().decode()[-3000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = registry.latest_published()
    assert killed_at is not None and killed_at < 4, "killed before it finished"

    restarted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert "resumed from state-step" in restarted.stdout + restarted.stderr

    reference = make_trainer(reference_home, config)
    reference.run(until_step=target, until_idle=True)
    resumed = make_trainer(farm_home, config)
    assert resumed.step_index == reference.step_index > 3
    assert resumed.cursor == reference.cursor
    a, b = _weights(farm_home, resumed.version), reference.model.state_dict()
    for name in b:
        assert torch.allclose(a[name], b[name], atol=1e-6), name
    sa, sb = resumed.optimizer.state_dict()["state"], reference.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key]["exp_avg"], sb[key]["exp_avg"], atol=1e-6)


def test_distillation_steps_learn_from_a_teacher_version(farm_home):
    run_campaign(farm_home, "distill", tasks=8, samples=2, policy_version=1)
    config = small_trainer_config(
        schedule=ScheduleConfig(0, 1, {"distill": 1.0}), teacher_version=1, evaluate_on_publish=False
    )
    trainer = make_trainer(farm_home, config)
    reports = [trainer.step() for _ in range(2)]
    assert all(r is not None and r.kind == "distill" for r in reports)
    # The student starts as the teacher: the KL starts at zero and the first update makes it positive.
    assert reports[0].metrics["distill_kl"] == pytest.approx(0.0, abs=1e-6)
    assert reports[1].metrics["distill_kl"] > 0.0
