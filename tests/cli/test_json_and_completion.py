"""`--json` on every listing and status command (its documented fields), shell completion of env ids, campaign
ids and policy versions, and completions printed inert by `data ls` / `data show`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.catalog import FamilyCache
from verifarm.envs.cli import complete_env_ids
from verifarm.policy.cli import complete_policy_versions
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.cli import complete_campaign_ids
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore

SPEC = {
    "name": "json",
    "envs": [{"env_id": "verifarm/Addition-v0", "max_difficulty": 2}],
    "tasks": 6,
    "samples_per_task": 2,
    "batch_size": 3,
    "policy": "reference",
    "reference_corruption": 0.5,
}
CAMPAIGN_FIELDS = {
    "campaign_id",
    "name",
    "state",
    "expected",
    "done",
    "passed",
    "failed",
    "infra_errors",
    "infra_retries",
    "rollouts_per_second",
    "created_at",
    "pass_rate",
}
HOSTILE = "\x1b[2J[bold]12[/bold]\u202e\x07\nAnswer: 12\n"  # clear screen, markup, bidi override, bell


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home with policy v1 (random weights), one finished campaign, a hostile completion, and a private Redis."""
    import torch

    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer

    home = tmp_path / "home"
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    CheckpointRegistry(home / "checkpoints").publish(build_model("tiny", len(tokenizer), seed=0), tokenizer, {})
    spec = parse_spec(SPEC)
    with RolloutStore(f"sqlite:///{home / 'rollouts.db'}") as store:
        store.create_campaign("json-1", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        rollout_batch(store, "json-1", spec, range(spec.tasks), ReferencePolicy(0.5, 0), FamilyCache())
        first = store.query()[0]
        store.create_campaign("hostile-1", spec.name, spec.model_dump(mode="json"), 1, 1, 5)
        store.add_records(
            [
                first.model_copy(
                    update={
                        "record_id": "hostile-record",
                        "campaign_id": "hostile-1",
                        "completion": HOSTILE,
                        "content_hash": "hostile",
                    }
                )
            ]
        )
    for name in ("VERIFARM_DATABASE_URL", "VERIFARM_CHECKPOINT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VERIFARM_HOME", str(home))
    broker = EmbeddedRedis(tmp_path / "broker")
    url, pid = broker.start()
    monkeypatch.setenv("VERIFARM_REDIS_URL", url)
    try:
        yield home
    finally:
        broker.stop(pid)


def json_of(*args: str):
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_listing_and_status_command_prints_its_documented_json(home: Path) -> None:
    envs = json_of("envs", "list")
    assert {"env_id", "min_difficulty", "max_difficulty", "verifier_version", "languages"} == set(envs[0])
    assert "verifarm/Addition-v0" in {e["env_id"] for e in envs}

    campaigns = json_of("campaign", "list")
    assert [c["campaign_id"] for c in campaigns] == ["json-1", "hostile-1"]
    assert all(set(c) == CAMPAIGN_FIELDS for c in campaigns)
    one = json_of("campaign", "status", "json-1")
    assert set(one) == CAMPAIGN_FIELDS and one["state"] == "done" and one["done"] == one["expected"] == 12

    listed = json_of("data", "ls", "--campaign", "json-1", "--all", "--limit", "5")
    assert set(listed) == {"records", "total", "duplicates", "deduplicated", "exact"}
    assert listed["total"] == 12 and len(listed["records"]) == 5 and listed["deduplicated"] is False
    assert {"record_id", "completion", "outcome", "policy_version"} <= set(listed["records"][0])

    versions = json_of("policy", "ls")
    assert [v["version"] for v in versions] == [1] and versions[0]["ok"] is True
    assert {
        "version",
        "checksum",
        "ok",
        "problems",
        "created_at",
        "parent_version",
        "training_step",
        "source",
        "metrics",
    } == set(versions[0])

    status = json_of("train", "status")
    assert status["running"] is False and status["pid"] is None
    assert [v["version"] for v in status["versions"]] == [1] and set(status["versions"][0]) == {
        "version",
        "ok",
        "trainer_step",
        "metrics",
    }

    result = CliRunner().invoke(app, ["workers", "ls", "--json", "--timeout", "0.5"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []  # none started on this broker


def test_data_ls_and_export_count_duplicates_the_same_way(home: Path, tmp_path: Path) -> None:
    deduplicated = json_of("data", "ls", "--campaign", "json-1")
    everything = json_of("data", "ls", "--campaign", "json-1", "--all")
    assert everything["duplicates"] == deduplicated["duplicates"]
    assert deduplicated["total"] + deduplicated["duplicates"] == everything["total"] == 12
    shown = CliRunner().invoke(app, ["data", "ls", "--campaign", "json-1"])
    assert f"of {deduplicated['total']} records ({deduplicated['duplicates']} duplicates not counted" in shown.stdout
    exported = CliRunner().invoke(app, ["data", "export", str(tmp_path / "out.jsonl"), "--campaign", "json-1"])
    assert exported.exit_code == 0, exported.output
    rows = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(rows) == deduplicated["total"]
    if deduplicated["duplicates"]:
        assert f"{deduplicated['duplicates']} duplicate records left out" in exported.stderr


def test_export_creates_missing_folders_only_with_parents(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.jsonl"
    refused = CliRunner().invoke(app, ["data", "export", str(target)])
    assert refused.exit_code == 2 and not (tmp_path / "a").exists()
    made = CliRunner().invoke(app, ["data", "export", str(target), "--parents"])
    assert made.exit_code == 0 and target.is_file(), made.output


def test_completions_are_printed_inert(home: Path) -> None:
    shown = CliRunner().invoke(app, ["data", "show", "hostile-record"])
    assert shown.exit_code == 0
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\u202e" not in shown.stdout
    assert json.loads(shown.stdout)["completion"] == HOSTILE  # escaped, yet the same string to a JSON reader
    listed = CliRunner().invoke(app, ["data", "ls", "--campaign", "hostile-1"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    assert "\x1b" not in listed.stdout and "\x07" not in listed.stdout and "\u202e" not in listed.stdout
    assert "\\x1b" in listed.stdout and "[bold]12" in listed.stdout  # shown as written, never read as markup


def test_shell_completion_of_env_ids_campaign_ids_and_policy_versions(home: Path) -> None:
    assert complete_env_ids("verifarm/Add") == ["verifarm/Addition-v0"]
    assert "verifarm/HumanEval-v0" in complete_env_ids("")
    assert complete_env_ids("nope") == []
    assert complete_campaign_ids("js") == ["json-1"]
    assert sorted(complete_campaign_ids("")) == ["hostile-1", "json-1"]
    assert complete_policy_versions("") == ["1"]
    assert complete_policy_versions("2") == []


def test_completion_on_a_home_without_a_store_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VERIFARM_HOME", str(tmp_path / "nothing"))
    monkeypatch.delenv("VERIFARM_DATABASE_URL", raising=False)
    monkeypatch.delenv("VERIFARM_CHECKPOINT_DIR", raising=False)
    assert complete_campaign_ids("") == [] and complete_policy_versions("") == []
    assert not (tmp_path / "nothing").exists()


def test_the_installed_script_completes_through_the_shell_protocol(home: Path) -> None:
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("verifarm")
    env = {
        **os.environ,
        "_VERIFARM_COMPLETE": "complete_bash",
        "COMP_CWORD": "3",
        "_TYPER_COMPLETE_ARGS": "verifarm campaign status js",
        "COMP_WORDS": "verifarm campaign status js",
    }
    completed = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert completed.stdout.split() == ["json-1"], completed.stdout + completed.stderr


def test_data_ls_stops_counting_past_its_limit_unless_asked(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from verifarm.rollout import cli as rollout_cli

    exact = json_of("data", "ls", "--campaign", "json-1", "--all")
    monkeypatch.setattr(rollout_cli, "COUNT_LIMIT", 5)
    bounded = json_of("data", "ls", "--campaign", "json-1", "--all", "--limit", "3")
    assert bounded["exact"] is False and bounded["total"] is None and bounded["duplicates"] is None
    assert len(bounded["records"]) == 3
    shown = CliRunner().invoke(app, ["data", "ls", "--campaign", "json-1"])
    assert "of more than 5 matching records, duplicates included" in shown.stdout
    counted = json_of("data", "ls", "--campaign", "json-1", "--all", "--count-all")
    assert counted["exact"] is True and counted["total"] == exact["total"] == 12
    assert counted["duplicates"] == exact["duplicates"]
