"""`verifarm demo --quick` end to end through the real farm: private Redis, a Celery worker pool, the
trainer, per-round evaluation, and the PNG plot."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.trainer.demo import DemoConfig, run_demo
from verifarm.trainer.rounds import campaign_spec


@pytest.mark.slow
def test_quick_demo_runs_rounds_through_the_worker_pool_and_plots(tmp_path):
    home = tmp_path / "demo"
    lines: list[str] = []
    config = DemoConfig.quick()
    results = run_demo(config, home, say=lines.append)

    assert [r.round for r in results] == list(range(config.rounds + 1))
    assert all(set(r.pass_at_1) == set(config.eval_difficulties) for r in results)
    assert all(r.records == config.campaign_tasks * config.samples_per_task for r in results[1:])
    assert any(line.startswith("round 2:") for line in lines)
    assert "held-out pass@1 (greedy) by difficulty" in "\n".join(lines)

    png = home / "pass_at_1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((home / "demo_results.json").read_text())) == config.rounds + 1

    with RolloutStore(f"sqlite:///{home / 'rollouts.db'}") as store:
        records = store.query(RecordFilter())
        evaluated = {entry.policy_version for entry in store.metrics()}
    # Every rollout came from a worker sampling a published checkpoint, not the reference policy.
    assert records and all(r.policy_name == "checkpoint" and r.policy_version >= 1 for r in records)
    assert {r.version for r in results} <= evaluated
    if any(r.passed for r in records if r.campaign_id.startswith("demo-round1")):
        assert results[1].version > results[0].version and results[1].steps > 0


def test_demo_refuses_to_wipe_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not made by"):
        run_demo(DemoConfig.quick(), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pretrain_batch_size": 0}, "pretrain_batch_size"),
        ({"pretrain_steps": 0}, "pretrain_steps"),
        ({"rounds": 0}, "rounds"),
        ({"campaign_min_digits": 3, "campaign_max_digits": 2}, "campaign_min_digits"),
        ({"pretrain_max_digits": 4}, "same gold digits"),
    ],
)
def test_bad_demo_settings_are_refused_with_the_setting_named(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(DemoConfig(), **changes)


def test_campaigns_and_evaluation_use_the_env_of_the_gold_corpus():
    base = DemoConfig()
    assert campaign_spec(base, 1).envs[0].env_id == base.evaluation().suites[0].env_id == "verifarm/Addition-v0"
    mixed = replace(
        base,
        trainer=replace(base.trainer, corpus=replace(base.trainer.corpus, arithmetic_env="verifarm/Arithmetic-v0")),
    )
    assert campaign_spec(mixed, 1).envs[0].env_id == "verifarm/Arithmetic-v0"
    assert mixed.evaluation().suites[0].env_id == "verifarm/Arithmetic-v0"
