"""`verifarm demo --quick` end to end through the real farm: private Redis, a Celery worker pool, the trainer's
frontier curriculum, per-round evaluation at every length, and the PNG plot."""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise

import pytest

from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.trainer.demo import DemoConfig, learned_lengths, run_demo, summary_table
from verifarm.trainer.frontier import FrontierRound


@pytest.mark.slow
def test_quick_demo_runs_frontier_rounds_through_the_worker_pool_and_plots(tmp_path):
    home = tmp_path / "demo"
    lines: list[str] = []
    config = DemoConfig.quick()
    history = run_demo(config, home, say=lines.append)

    assert [entry.round for entry in history] == list(range(config.rounds + 1))
    assert all(set(entry.pass_at_1) == {1, 2, 3} for entry in history)
    assert any("round  2 frontier" in line for line in lines)
    assert "held-out pass@1 (greedy) by length" in "\n".join(lines)
    assert "lengths learned by the loop" in "\n".join(lines)

    png = home / "pass_at_1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((home / "demo_results.json").read_text())) == config.rounds + 1

    with RolloutStore(f"sqlite:///{home / 'rollouts.db'}") as store:
        records = store.query(RecordFilter())
    # Every rollout came from a worker sampling a published checkpoint, on tasks one and two digits past the
    # frontier (never past the target).
    assert records and all(r.policy_name == "checkpoint" and r.policy_version >= 1 for r in records)
    assert len(records) == config.rounds * config.tasks_per_round * config.samples_per_task
    for entry, next_entry in pairwise(history):
        round_records = [r for r in records if r.campaign_id.startswith(f"frontier-r{next_entry.round}-")]
        reach = range(entry.frontier + 1, min(entry.frontier + config.reach, config.target_digits) + 1)
        assert round_records and {r.difficulty for r in round_records} <= set(reach)
        assert all(r.prompt.startswith("(units first) ") for r in round_records)


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not made by"):
        run_demo(DemoConfig.quick(), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pretrain_batch_size": 0}, "pretrain_batch_size"),
        ({"rounds": 0}, "rounds"),
        ({"gold_digits": 8}, "gold_digits < target_digits"),
        ({"answer_order": "sideways"}, "answer_order"),
        ({"workers": -1}, "workers"),
        ({"time_budget_seconds": 0}, "time_budget_seconds"),
        ({"reach": 0}, "reach"),
    ],
)
def test_bad_demo_settings_are_refused_with_the_setting_named(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(DemoConfig(), **changes)


def test_the_demo_trains_on_gold_data_of_its_order_and_length_only():
    config = DemoConfig().trainer_config()
    assert config.corpus.arithmetic_max_digits == config.curriculum.gold_digits == 3
    assert (
        config.corpus.arithmetic_options
        == config.curriculum.env_options
        == {
            "answer_order": "units_first",
            "solution": "direct",
        }
    )


def test_the_summary_names_the_lengths_the_loop_taught():
    history = [
        FrontierRound(0, 3, {3: 1.0, 4: 0.0, 5: 0.0}, 0.0, version=1),
        FrontierRound(1, 4, {3: 1.0, 4: 0.94, 5: 0.2}, 60.0, version=2),
        FrontierRound(2, 4, {3: 1.0, 4: 0.97, 5: 0.5}, 120.0, version=3),
    ]
    assert learned_lengths(history) == [4, 5]
    table = summary_table(history)
    assert "4 digits, 5 digits" in table and "    2       v3         4" in table
