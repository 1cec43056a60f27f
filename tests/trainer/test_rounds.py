"""Rounds of expert iteration (`trainer/rounds.py`, run by `benchmarks/self_improvement.py --part expert`): each
round's campaign stays within the gold data's digits, its verified rollouts are trained on, and the new version
is evaluated on held-out tasks."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from verifarm.rollout.orchestration import LocalFarm
from verifarm.rollout.store import RecordFilter
from verifarm.trainer.config import RoundsConfig
from verifarm.trainer.corpus import build_corpus
from verifarm.trainer.rounds import campaign_spec, farm_trainer, run_rounds, summary_table

from .trainer_helpers import TEST_CORPUS


def test_a_rounds_campaign_samples_the_gold_digits_only():
    config = RoundsConfig()
    (env,) = campaign_spec(config, 1).envs
    assert (env.min_difficulty, env.max_difficulty) == (1, config.pretrain_max_digits)
    assert campaign_spec(config, 1).seed != campaign_spec(config, 2).seed  # each round draws new tasks


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rounds": 0}, "rounds"),
        ({"campaign_min_digits": 3, "campaign_max_digits": 2}, "campaign_min_digits"),
        ({"pretrain_max_digits": 2}, "same gold digits"),
    ],
)
def test_bad_rounds_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        RoundsConfig(**changes)


def test_a_round_trains_on_its_verified_rollouts_and_evaluates_the_new_version(tmp_path, pretrained_checkpoint):
    base = RoundsConfig()
    config = RoundsConfig(
        workers=0,
        rounds=1,
        campaign_tasks=24,
        samples_per_task=4,
        temperature=0.5,
        pretrain_max_digits=1,
        campaign_max_digits=1,
        eval_difficulties=(1, 2),
        eval_tasks=4,
        trainer=replace(base.trainer, corpus=TEST_CORPUS, batch_size=8),
    )
    farm = LocalFarm.fresh(tmp_path / "farm")
    try:
        shutil.copytree(pretrained_checkpoint, farm.settings.checkpoints)
        trainer = farm_trainer(config, farm, build_corpus(TEST_CORPUS))
        results = run_rounds(config, trainer, farm.campaigns(config.round_timeout_seconds), lambda line: None)
        records = farm.store.query(RecordFilter())
    finally:
        farm.close()
    start, round_one = results
    assert (start.round, start.version) == (0, 1) and round_one.round == 1
    assert round_one.version == 2 and round_one.steps > 0  # trained on the round's data, then published
    assert round_one.records == len(records) == 96 and {r.difficulty for r in records} == {1}
    assert round_one.campaign_pass_rate == sum(r.passed for r in records) / 96
    assert set(round_one.pass_at_1) == {1, 2} and round_one.heldout_loss is not None
    assert "v2" in summary_table(results)
