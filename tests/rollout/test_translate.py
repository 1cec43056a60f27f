"""The translate campaign kind: verified programs from the store carried into other languages, judged on the
problem's tests and on agreement with the source over 50 generated inputs, with lineage kept and exported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.translation import TranslationFamily
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.orchestration import roll_out_campaign
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.translate import export_translation_pairs, translation_records, translation_spec


def _python_source_campaign(store: RolloutStore, tasks: int = 3) -> None:
    spec = parse_spec(
        {
            "envs": [{"env_id": "verifarm/Program-v0", "options": {"language": "python"}}],
            "tasks": tasks,
            "samples_per_task": 1,
            "policy": "reference",
            "seed": 5,
        }
    )
    reports = roll_out_campaign(store, spec, ReferencePolicy(), "src")
    assert sum(report.passed for report in reports) == tasks


def test_a_translation_that_passes_the_tests_but_differs_on_a_generated_input_fails():
    family = TranslationFamily(target_language="python", source_options={"language": "c"}, source_seed=3)
    task = family.generate(3, 1)
    assert task.data["problem"] == "sum_numbers" and "```c" in task.prompt and "```python" in task.prompt
    # Right on the hidden tests (n <= 4 at difficulty 1), wrong from n = 7 on: only the differential check sees it.
    sly = "```python\nimport sys\nt = sys.stdin.read().split()\nn = int(t[0])\nprint(sum(map(int, t[1:1 + n])) + (n >= 7))\n```"
    verdict = family.verify(task, sly)
    assert not verdict.passed and verdict.reason.startswith("differential check: wrong output"), verdict
    first = verdict.details["differential_first_difference"]
    assert int(first["input"].split()[0]) >= 7
    assert int(first["translation_output"]) == int(first["source_output"]) + 1
    assert verdict.details["lineage"]["source_language"] == "c"
    good = family.verify(task, task.reference)
    assert good.passed and good.details["differential_compared"] >= 50, good


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        parse_spec(
            {
                "envs": [{"env_id": "verifarm/Translate-v0"}],
                "tasks": 1,
                "translate": {"source_env": "verifarm/Program-v0", "target_languages": ["klingon"]},
            }
        )
    with pytest.raises(ValueError, match=r"at least 50|greater than or equal to 50"):
        parse_spec(
            {
                "envs": [{"env_id": "verifarm/Translate-v0"}],
                "tasks": 1,
                "translate": {
                    "source_env": "verifarm/Program-v0",
                    "target_languages": ["go"],
                    "differential_inputs": 10,
                },
            }
        )


@pytest.mark.slow
def test_reference_translations_of_a_python_campaign_all_pass_with_lineage(tmp_path: Path):
    with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        _python_source_campaign(store)
        with pytest.raises(ValueError, match="no passing program records"):
            translation_spec(store, {"source_campaign": "nothing-here", "target_languages": ["c"]})
        spec = translation_spec(
            store,
            {"source_campaign": "src", "target_languages": ["c", "javascript", "python"]},
            policy="reference",
            samples_per_task=1,
            batch_size=4,
        )
        assert spec.tasks == 3 * 2  # python is the sources' own language: no task
        reports = roll_out_campaign(store, spec, ReferencePolicy(), "tr")
        assert sum(r.passed for r in reports) == 6 and sum(r.infra_errors for r in reports) == 0
        records = list(translation_records(store, RecordFilter(campaign_id="tr")))
        assert len(records) == 6
        sources = {r.record_id for r in store.query(RecordFilter(campaign_id="src"))}
        for record in records:
            lineage = record.details["lineage"]
            assert lineage["source_record_id"] in sources and lineage["source_language"] == "python"
            assert record.details["differential_compared"] >= 50
        assert len(list(translation_records(store, RecordFilter(campaign_id="tr"), target_language="c"))) == 3
        written = export_translation_pairs(
            store, tmp_path / "pairs.jsonl", RecordFilter(campaign_id="tr", passed=True), target_language="javascript"
        )
        pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
        assert written == len(pairs) == 3
        assert all(p["source"].startswith("import sys") and "require('fs')" in p["translation"] for p in pairs)
    env = {"VERIFARM_HOME": str(tmp_path / "home"), "VERIFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}
    listed = CliRunner().invoke(app, ["data", "translations", "--target-language", "js"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "3 translation records" in listed.output and "javascript" in listed.output
    exported = CliRunner().invoke(app, ["data", "translations", "--pairs", str(tmp_path / "cli.jsonl")], env=env)
    assert exported.exit_code == 0 and "6 translation pairs" in exported.output, exported.output
    bad = CliRunner().invoke(app, ["data", "translations", "--source-language", "cobol"], env=env)
    assert bad.exit_code != 0 and "unknown language 'cobol'" in bad.output


@pytest.mark.slow
def test_translate_campaign_samples_through_an_endpoint_policy(tmp_path: Path, checkpoint_root: Path):
    """The same farm path with a `verifarm serve` server: the tiny policy cannot translate, so every record is a
    plain fail (never an infra error), sampled over HTTP, with its lineage."""
    from verifarm.policy.asgi import BackgroundServer
    from verifarm.policy.server import CompletionService, RegistryFollower, build_app

    server = BackgroundServer(build_app(CompletionService(RegistryFollower(checkpoint_root), "verifarm-policy")))
    try:
        with RolloutStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
            _python_source_campaign(store, tasks=2)
            spec = translation_spec(
                store,
                {"source_env": "verifarm/Program-v0", "target_languages": ["go"]},
                endpoint={"base_url": server.url},
                samples_per_task=2,
                sampling={"max_new_tokens": 16},
            )
            sampler = CheckpointPolicySource(tmp_path / "no-checkpoints-here").sampler_for_spec(spec)
            reports = roll_out_campaign(store, spec, sampler, "http-tr")
            assert sum(r.records_written for r in reports) == 2 * 2
            assert sum(r.infra_errors for r in reports) == 0
            records = list(translation_records(store, RecordFilter(campaign_id="http-tr"), target_language="go"))
        assert len(records) == 4 and {r.policy_name for r in records} == {"endpoint"}
        assert all(r.details["lineage"]["source_language"] == "python" for r in records)
    finally:
        server.stop()


def test_submit_freezes_the_sources_from_the_store(tmp_path: Path):
    import yaml

    from verifarm.rollout.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "broker")
    url, pid = server.start()
    try:
        env = {
            "VERIFARM_HOME": str(tmp_path / "home"),
            "VERIFARM_REDIS_URL": url,
            "VERIFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
        }
        with RolloutStore(env["VERIFARM_DATABASE_URL"]) as store:
            _python_source_campaign(store, tasks=2)
        spec = {
            "name": "to-go",
            "envs": [{"env_id": "verifarm/Translate-v0"}],
            "tasks": 1,
            "policy": "reference",
            "translate": {"source_campaign": "src", "target_languages": ["go", "java"]},
        }
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(spec))
        result = CliRunner().invoke(app, ["campaign", "submit", str(tmp_path / "t.yaml"), "--id", "tr"], env=env)
        assert result.exit_code == 0, result.output
        with RolloutStore(env["VERIFARM_DATABASE_URL"]) as store:
            row = store.get_campaign("tr")
        assert row.total_tasks == 4 and len(row.spec["translate"]["sources"]) == 2
        assert parse_spec(row.spec).translate.pairs()[3][1] == "java"
        spec["translate"]["source_campaign"] = "absent"
        (tmp_path / "none.yaml").write_text(yaml.safe_dump(spec))
        result = CliRunner().invoke(app, ["campaign", "submit", str(tmp_path / "none.yaml")], env=env)
        assert result.exit_code != 0 and "no passing program records" in result.output
    finally:
        server.stop(pid)
