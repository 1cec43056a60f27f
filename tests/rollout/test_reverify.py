"""Re-verification and the verifier-version filter against a real SQLite store: stored MathAnswer records scored by
an older verifier are re-scored with the current one; the flips are reported and nothing stored changes."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.catalog import get_family
from verifarm.rollout.campaign import parse_spec, plan_task
from verifarm.rollout.reverify import format_reverify, reverify
from verifarm.rollout.store import (
    RecordFilter,
    RolloutRecord,
    RolloutStore,
    content_hash_for,
    group_id_for,
    record_id_for,
)

SPEC = {
    "name": "old-math",
    "envs": [
        {
            "env_id": "verifarm/MathAnswer-v0",
            "options": {"kinds": ["fraction"]},
            "min_difficulty": 1,
            "max_difficulty": 2,
        }
    ],
    "tasks": 12,
    "samples_per_task": 1,
    "policy": "reference",
}
OLD = "math-answer-1"


def _record(campaign: str, plan, task, completion: str, outcome: str, verifier_version: str) -> RolloutRecord:
    return RolloutRecord(
        record_id=record_id_for(campaign, plan.task_index, 0),
        campaign_id=campaign,
        env_id=plan.env_id,
        env_version="v0",
        task_index=plan.task_index,
        task_seed=plan.seed,
        task_id=task.task_id,
        difficulty=plan.difficulty,
        group_id=group_id_for(campaign, plan.task_index),
        group_size=1,
        sample_index=0,
        prompt=task.prompt,
        completion=completion,
        reward=float(outcome == "pass"),
        passed=outcome == "pass",
        reason="as the old verifier said",
        outcome=outcome,
        policy_version=1,
        policy_name="checkpoint",
        verifier_version=verifier_version,
        sandbox_backend=None,
        sample_seconds=0.01,
        verify_seconds=0.01,
        content_hash=content_hash_for(plan.env_id, task.prompt, completion),
    )


def _gold_value(gold: str) -> Fraction:
    if gold.lstrip("-").isdigit():
        return Fraction(int(gold))
    sign = -1 if gold.startswith("-") else 1
    numerator, denominator = gold.lstrip("-").removeprefix("\\frac{").rstrip("}").split("}{")
    return sign * Fraction(int(numerator), int(denominator))


def _terminates(value: Fraction) -> bool:
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


@pytest.fixture
def stored(tmp_path: Path):
    """A campaign of the old verifier's records: rounded decimals it passed, euro amounts it failed, references."""
    url = f"sqlite:///{tmp_path / 'rollouts.db'}"
    spec = parse_spec(SPEC)
    family = get_family("verifarm/MathAnswer-v0", kinds=["fraction"])
    expected_flips: dict[str, str] = {}
    records = []
    for index in range(spec.tasks):
        plan = plan_task(spec, index)
        task = family.generate(plan.seed, plan.difficulty)
        gold = task.data["answer"]
        value = _gold_value(gold)
        if not _terminates(value) and "pass->fail" not in expected_flips.values():
            # math-verify rounded to 6 places and passed this; the conventions make it an approximation
            record = _record("old-1", plan, task, f"Answer: {float(value):.10f}", "pass", OLD)
            expected_flips[record.record_id] = "pass->fail"
        elif len(expected_flips) < 3 and "fail->pass" not in expected_flips.values():
            record = _record("old-1", plan, task, f"Answer: {gold} euros", "fail", OLD)  # a unit is now fine
            expected_flips[record.record_id] = "fail->pass"
        else:
            record = _record("old-1", plan, task, task.reference, "pass", "math-answer-2")
        records.append(record)
    family.close()
    assert sorted(expected_flips.values()) == ["fail->pass", "pass->fail"]
    with RolloutStore(url) as store:
        store.create_campaign("old-1", spec.name, spec.model_dump(mode="json"), spec.tasks, 1, 5)
        assert store.add_records(records) == len(records)
    return url, records, expected_flips


def test_reverify_reports_flips_and_leaves_the_store_unchanged(stored) -> None:
    url, records, expected_flips = stored
    with RolloutStore(url) as store:
        before = [record.model_dump() for record in store.query()]
        report = reverify(store, RecordFilter(campaign_id="old-1"))
        after = [record.model_dump() for record in store.query()]
    assert before == after  # the originals stay as they were
    assert report.checked == len(records) and not report.skipped
    assert {flip.record_id: flip.direction for flip in report.flips} == expected_flips
    assert all(
        flip.stored_verifier_version == OLD and flip.new_verifier_version == "math-answer-2" for flip in report.flips
    )
    assert report.directions() == {"pass->fail": 1, "fail->pass": 1}
    text = format_reverify(report)
    assert "flips: 2" in text and "pass->fail" in text and "math-answer-1 -> math-answer-2" in text


def test_verifier_version_filter(stored) -> None:
    url, records, _ = stored
    with RolloutStore(url) as store:
        assert store.count(RecordFilter(verifier_version=OLD)) == 2
        assert store.count(RecordFilter(verifier_version="math-answer-2")) == len(records) - 2
        assert store.count(RecordFilter(verifier_version="no-such-version")) == 0
        only_old = reverify(store, RecordFilter(verifier_version=OLD))
    assert only_old.checked == 2 and len(only_old.flips) == 2


def test_a_record_whose_task_no_longer_regenerates_is_skipped_not_scored(stored, tmp_path: Path) -> None:
    url, records, _ = stored
    moved = records[0].model_copy(update={"record_id": record_id_for("old-1", 99, 0), "task_id": "some-other-task"})
    with RolloutStore(url) as store:
        store.add_records([moved])
        report = reverify(store, RecordFilter(campaign_id="old-1"))
    assert report.checked == len(records)
    assert [record_id for record_id, _ in report.skipped] == [moved.record_id]
    assert "some-other-task" in report.skipped[0][1]


def test_cli_lists_by_verifier_version_and_reverifies(stored, tmp_path: Path) -> None:
    url, records, expected_flips = stored
    env = {"VERIFARM_DATABASE_URL": url, "VERIFARM_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    listed = runner.invoke(app, ["data", "ls", "--verifier-version", OLD], env=env)
    assert listed.exit_code == 0, listed.output
    assert "2 of 2 records" in listed.output
    shown = runner.invoke(app, ["data", "reverify", "--campaign", "old-1", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["checked"] == len(records)
    assert {flip["record_id"]: flip["direction"] for flip in report["flips"]} == expected_flips
    limited = runner.invoke(app, ["data", "reverify", "--env", "verifarm/MathAnswer-v0", "--limit", "1"], env=env)
    assert limited.exit_code == 0 and "re-verified 1 records" in limited.output
    assert runner.invoke(app, ["data", "reverify", "--limit", "0"], env=env).exit_code == 2
