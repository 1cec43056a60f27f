"""The `verifarm campaign` and `verifarm data` commands against a real private Redis and a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import datasets
import pytest
import redis
import yaml
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.app import QUEUE
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore

SPEC = {
    "name": "cli",
    "envs": [{"env_id": "verifarm/Addition-v0", "max_difficulty": 2}],
    "tasks": 10,
    "samples_per_task": 2,
    "batch_size": 3,
    "policy": "reference",
    "reference_corruption": 0.5,
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "broker")
    url, pid = server.start()
    try:
        yield url
    finally:
        server.stop(pid)


@pytest.fixture
def env(tmp_path: Path, broker: str) -> dict[str, str]:
    return {
        "VERIFARM_HOME": str(tmp_path / "home"),
        "VERIFARM_REDIS_URL": broker,
        "VERIFARM_DATABASE_URL": f"sqlite:///{tmp_path / 'rollouts.db'}",
    }


def invoke(env: dict[str, str], *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def test_bad_specs_are_refused_and_nothing_is_stored(env: dict[str, str], tmp_path: Path, broker: str) -> None:
    bad = write_spec(tmp_path / "bad.yaml", {**SPEC, "envs": [{"env_id": "verifarm/Nope-v0"}], "tasks": -5})
    result = invoke(env, "campaign", "submit", str(bad))
    assert result.exit_code == 2
    assert "unknown env id" in result.output and "tasks" in result.output
    (tmp_path / "broken.yaml").write_text("envs: [\n  {env_id: ")
    result = invoke(env, "campaign", "submit", str(tmp_path / "broken.yaml"))
    assert result.exit_code == 2 and "malformed" in result.output
    result = invoke(env, "campaign", "submit", str(tmp_path / "absent.json"))
    assert result.exit_code == 2 and "does not exist" in result.output
    # A policy no worker could load is refused too (no checkpoint published in this home).
    result = invoke(
        env,
        "campaign",
        "submit",
        str(write_spec(tmp_path / "latest.yaml", {**SPEC, "policy": "latest", "reference_corruption": 0.0})),
    )
    assert result.exit_code == 2 and "no good checkpoint" in result.output
    # So is any campaign while the broker is unreachable (a runtime failure: exit 1).
    down = {**env, "VERIFARM_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = invoke(down, "campaign", "submit", str(write_spec(tmp_path / "good.yaml", SPEC)))
    assert result.exit_code == 1 and "cannot reach the Redis broker" in result.output
    assert invoke(env, "campaign", "list").output.strip() == "no campaigns"
    assert not redis.Redis.from_url(broker).keys(f"{QUEUE}*")  # nothing enqueued either


def test_submit_enqueues_by_priority_then_status_and_cancel(env: dict[str, str], tmp_path: Path, broker: str) -> None:
    low = invoke(
        env, "campaign", "submit", str(write_spec(tmp_path / "low.yaml", {**SPEC, "priority": 1})), "--id", "low-1"
    )
    assert low.exit_code == 0, low.output
    high = invoke(
        env, "campaign", "submit", str(write_spec(tmp_path / "high.yaml", {**SPEC, "priority": 9})), "--id", "high-1"
    )
    assert high.exit_code == 0, high.output
    client = redis.Redis.from_url(broker)
    # Redis pops the lower priority number first: the urgent campaign's 4 batches sit in the first list.
    first, later = client.lrange(QUEUE, 0, -1), client.lrange(f"{QUEUE}:8", 0, -1)
    assert len(first) == 4 and len(later) == 4
    assert all(json.loads(m)["headers"]["id"].startswith("high-1:") for m in first)

    duplicate = invoke(env, "campaign", "submit", str(tmp_path / "low.yaml"), "--id", "low-1")
    assert duplicate.exit_code == 2 and "already exists" in duplicate.output

    state = json.loads(invoke(env, "campaign", "status", "low-1", "--json").output)
    assert state["state"] == "running" and state["done"] == 0 and state["expected"] == 20
    listed = invoke(env, "campaign", "list").output
    assert "low-1" in listed and "high-1" in listed
    cancelled = invoke(env, "campaign", "cancel", "low-1")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    assert invoke(env, "campaign", "status", "nope").exit_code == 2
    assert "4 batches queued again" in invoke(env, "campaign", "requeue", "high-1").output


def test_data_commands(env: dict[str, str], tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    with RolloutStore(env["VERIFARM_DATABASE_URL"]) as store:
        store.create_campaign("data-1", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        rollout_batch(store, "data-1", spec, range(spec.tasks), ReferencePolicy(0.5, 0), FamilyCache())
        first = store.query()[0]

    watched = invoke(env, "campaign", "watch", "data-1", "--interval", "0.1")
    assert watched.exit_code == 0 and "done" in watched.output and "20/20" in watched.output
    listed = invoke(env, "data", "ls", "--campaign", "data-1", "--outcome", "fail", "--limit", "3")
    assert listed.exit_code == 0, listed.output
    assert "fail" in listed.output and "pass " not in listed.output
    shown = invoke(env, "data", "show", first.record_id[:10])
    assert shown.exit_code == 0 and json.loads(shown.output)["record_id"] == first.record_id
    assert invoke(env, "data", "show", "zzzz").exit_code == 2
    assert invoke(env, "data", "ls", "--outcome", "maybe").exit_code == 2

    exported = invoke(
        env,
        "data",
        "export",
        str(tmp_path / "pass.parquet"),
        "--format",
        "parquet",
        "--campaign",
        "data-1",
        "--outcome",
        "pass",
    )
    assert exported.exit_code == 0, exported.output
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "pass.parquet"), split="train")
    assert loaded.num_rows > 0 and set(loaded["outcome"]) == {"pass"}
    assert len(set(loaded["content_hash"])) == loaded.num_rows  # deduplicated by default
