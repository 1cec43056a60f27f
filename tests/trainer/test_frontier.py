"""The frontier curriculum: held-out evaluation alone moves the frontier, only verified samples past the gold data
are trained on, the gold corpus stays within its length, and `verifarm train run` drives the rounds itself."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
import yaml
from typer.testing import CliRunner

from verifarm.policy.registry import CheckpointRegistry
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.trainer.config import FrontierConfig, TrainerConfig
from verifarm.trainer.corpus import CorpusConfig, build_corpus
from verifarm.trainer.frontier import FrontierState, ReplayPool, next_frontier, round_spec

from .trainer_helpers import ENV, TEST_CORPUS, run_campaign, store_url

UNITS_FIRST = {"answer_order": "units_first"}


def test_the_frontier_moves_on_held_out_pass_at_1_at_the_next_length_only():
    assert next_frontier(4, {4: 1.0, 5: 0.89}, 0.9) == 4
    assert next_frontier(4, {4: 1.0, 5: 0.9}, 0.9) == 5
    assert next_frontier(4, {5: 0.2, 6: 1.0}, 0.9) == 4  # a later length never skips the next one
    assert next_frontier(4, {}, 0.5) == 4


def test_a_round_samples_exactly_one_digit_past_the_frontier():
    config = FrontierConfig(env_options=UNITS_FIRST, gold_digits=4, target_digits=8)
    spec = round_spec(config, 3, 5, seed=0)
    (choice,) = spec.envs
    assert (choice.min_difficulty, choice.max_difficulty) == (5, 5)
    assert choice.options == UNITS_FIRST and spec.policy == "latest"
    # The budget fits the reference of the longest task asked.
    assert config.max_new_tokens(8) > len("Answer: 123456789")


def test_a_longer_reach_also_samples_past_the_next_length_but_never_past_the_target():
    config = FrontierConfig(env_options=UNITS_FIRST, gold_digits=4, target_digits=8, reach=2)
    (choice,) = round_spec(config, 3, 5, seed=0).envs
    assert (choice.min_difficulty, choice.max_difficulty) == (5, 6)
    (last,) = round_spec(config, 9, 8, seed=0).envs
    assert (last.min_difficulty, last.max_difficulty) == (8, 8)
    assert round_spec(config, 3, 5, seed=0).sampling.max_new_tokens == config.max_new_tokens(6)


def test_the_gold_corpus_never_holds_more_than_four_digits():
    corpus_config = CorpusConfig(
        arithmetic_max_digits=4, arithmetic_documents=2000, arithmetic_options=UNITS_FIRST, heldout_fraction=0.1
    )
    config = TrainerConfig(corpus=corpus_config, curriculum=FrontierConfig(env_options=UNITS_FIRST, gold_digits=4))
    corpus = build_corpus(config.corpus)
    lengths = set()
    for document in corpus.train + corpus.heldout:
        prompt = document.split("\n", 1)[0]
        operands = re.fullmatch(r"\(units first\) (\d+)\+(\d+)=\?", prompt)
        assert operands, prompt
        lengths.update(len(x) for x in operands.groups())
    assert lengths == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="gold data stops at 4"):
        TrainerConfig(
            corpus=CorpusConfig(arithmetic_max_digits=5, arithmetic_options=UNITS_FIRST), curriculum=config.curriculum
        )
    with pytest.raises(ValueError, match="must be the curriculum's"):
        TrainerConfig(corpus=CorpusConfig(arithmetic_max_digits=4), curriculum=config.curriculum)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gold_digits": 4, "target_digits": 4}, "gold_digits < target_digits"),
        ({"threshold": 0.0}, "threshold"),
        ({"env_options": {"answer_order": "sideways"}}, "answer_order"),
        ({"target_digits": 41}, "goes up to 40"),
        ({"steps_per_round": 0}, "steps_per_round"),
        ({"reach": 0}, "reach"),
    ],
)
def test_bad_curriculum_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        FrontierConfig(**bad)


def test_records_past_the_gold_data_enter_training_only_if_they_passed(farm_home):
    # The fixture's policy was pre-trained on 1-digit sums; 2-digit tasks are past its gold data.
    campaign = run_campaign(farm_home, "beyond", tasks=24, samples=4, policy_version=1, max_digits=2)
    with RolloutStore(store_url(farm_home)) as store:
        records = store.query(RecordFilter(campaign_id=campaign))
        passing = {(r.task_id, r.completion) for r in records if r.passed}
        assert passing and len(passing) < len(records), "the campaign needs both passing and failing samples"
        pool = ReplayPool(store, ENV, seed=0)
        assert pool.refresh([campaign]) == len(passing)
        assert {(r.task_id, r.completion) for r in pool.samples} == passing
        from verifarm.envs.catalog import get_family

        family = get_family(ENV)
        for step in range(5):
            batch = pool.batch("rft", 16, step, current_version=1)
            by_prompt = {r.prompt: r for r in records}
            for prompt, completion in zip(batch.prompts, batch.completions):
                task = family.generate(by_prompt[prompt].task_seed, by_prompt[prompt].difficulty)
                assert task.prompt == prompt and family.verify(task, completion).passed
        assert pool.batch("rft", 8, 3, 1).completions == pool.batch("rft", 8, 3, 1).completions  # (seed, step)
        assert ReplayPool(store, ENV, seed=0).batch("rft", 8, 0, 1) is None  # nothing refreshed: nothing to train


def curriculum_config(tmp_path, **curriculum) -> str:
    values = dict(
        gold_digits=1,
        target_digits=3,
        tasks_per_round=16,
        samples_per_task=4,
        temperature=1.0,
        steps_per_round=4,
        threshold=0.5,
        eval_tasks=8,
        max_rounds=2,
    )
    values.update(curriculum)
    config = {
        "corpus": {**TEST_CORPUS.__dict__},
        "schedule": {"pretrain_steps": 1, "posttrain_steps": 1, "mode_weights": {"rft": 1.0}},
        "batch_size": 8,
        "max_seq_len": 96,
        "learning_rate": 1e-3,
        "curriculum": values,
    }
    path = tmp_path / "frontier.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.slow
def test_train_run_drives_the_frontier_rounds_itself_and_resumes(farm_home, tmp_path):
    from verifarm.cli import app

    runner = CliRunner()
    config = curriculum_config(tmp_path)
    result = runner.invoke(app, ["train", "run", "--config", config])
    assert result.exit_code == 0, result.output
    assert "round  0 frontier 1" in result.output and "round  2 frontier" in result.output
    registry = CheckpointRegistry(farm_home / "checkpoints")
    latest = registry.load()
    state = FrontierState.from_dict(latest.metadata["frontier"])
    assert state.rounds == 2 and len(state.campaign_ids) == 2 and len(state.history) == 3
    threshold = TrainerConfig.from_yaml(config).curriculum.threshold
    for before, after in pairwise(state.history):
        # Each round's decision is the held-out evaluation's, whatever its campaign's pass rate was.
        assert after.frontier == next_frontier(before.frontier, after.pass_at_1, threshold)
        assert set(after.pass_at_1) == {1, 2, 3}
    with RolloutStore(store_url(farm_home)) as store:
        for index, campaign_id in enumerate(state.campaign_ids):
            difficulties = {r.difficulty for r in store.query(RecordFilter(campaign_id=campaign_id))}
            assert difficulties == {state.history[index].frontier + 1}
        (entry,) = store.metrics(latest.version)
    assert entry.metrics["frontier/digits"] == state.frontier
    assert entry.metrics["frontier/d3/pass@1"] == state.history[-1].pass_at_1[3]
    # A restart carries on from the published state: two more rounds, not two again from round 1.
    more = curriculum_config(tmp_path, max_rounds=3)
    result = runner.invoke(app, ["train", "run", "--config", more])
    assert result.exit_code == 0, result.output
    resumed = FrontierState.from_dict(registry.load().metadata["frontier"])
    assert resumed.rounds == 3 and resumed.campaign_ids[:2] == state.campaign_ids


def test_the_example_frontier_config_loads():
    from pathlib import Path

    config = TrainerConfig.from_yaml(Path(__file__).parents[2] / "examples" / "frontier.yaml")
    assert config.curriculum.env_options == config.corpus.arithmetic_options
    assert config.corpus.arithmetic_max_digits == config.curriculum.gold_digits == 4
    assert config.max_seq_len >= config.curriculum.max_new_tokens(config.curriculum.target_digits) + 30
