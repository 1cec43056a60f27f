"""Whole campaigns run from Python: created then rolled out batch by batch in this process, on a one-folder farm."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.orchestration import InProcessCampaigns, LocalFarm, roll_out_campaign
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.store import RecordFilter, RolloutStore


def addition_spec(policy: str | int, tasks: int = 3, samples: int = 2):
    return parse_spec(
        {
            "envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 2}],
            "tasks": tasks,
            "samples_per_task": samples,
            "policy": policy,
            "sampling": {"max_new_tokens": 8},
            "batch_size": 2,
        }
    )


def test_a_campaign_is_created_then_every_batch_rolled_out(store: RolloutStore) -> None:
    spec = addition_spec("reference", tasks=5)
    reports = roll_out_campaign(store, spec, ReferencePolicy(), "whole")
    assert [r.task_indices for r in reports] == [[0, 1], [2, 3], [4]]
    assert store.get_campaign("whole").expected_records == 10
    assert store.count(RecordFilter(campaign_id="whole")) == 10

    with pytest.raises(ValueError, match="already exists"):
        roll_out_campaign(store, spec, ReferencePolicy(), "whole")
    assert store.count(RecordFilter(campaign_id="whole")) == 10


def test_in_process_campaigns_sample_the_newest_version_of_the_farm(
    tmp_path: Path, checkpoint_template: Path, publish_tiny
) -> None:
    with LocalFarm.fresh(tmp_path / "farm") as farm:
        shutil.copytree(checkpoint_template, farm.settings.checkpoints)
        runner = farm.campaigns(timeout_seconds=60)
        assert isinstance(runner, InProcessCampaigns)  # no pool started: rollouts in this process

        first = runner.run(addition_spec("latest"))
        publish_tiny(farm.settings.checkpoints, seed=1)
        second = runner.run(addition_spec("latest"))

        assert first.state == second.state == "done" and first.done == second.done == 6
        for state, version in ((first, 1), (second, 2)):
            records = farm.store.query(RecordFilter(campaign_id=state.campaign_id))
            assert {(r.policy_name, r.policy_version) for r in records} == {("checkpoint", version)}


def test_a_fresh_farm_wipes_only_a_folder_a_farm_made(tmp_path: Path) -> None:
    home = tmp_path / "farm"
    LocalFarm.fresh(home).close()
    (home / "left-over.txt").write_text("from the previous run")
    LocalFarm.fresh(home).close()
    assert not (home / "left-over.txt").exists()

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not made by"):
        LocalFarm.fresh(tmp_path / "mine")
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep me"
