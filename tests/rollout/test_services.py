"""The store and broker checks commands run when they start, and PostgreSQL URLs in the forms people write."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from verifarm.envs.catalog import FamilyCache
from verifarm.redaction import redact_url
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.embedded_redis import free_port
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.services import ServiceUnavailable, check_broker, check_store
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.settings import Settings

SPEC = {
    "name": "pg",
    "envs": [{"env_id": "verifarm/Addition-v0"}],
    "tasks": 3,
    "samples_per_task": 2,
    "policy": "reference",
}


def test_a_bare_postgresql_url_and_the_psycopg2_form_reach_the_same_store(postgres_url: str) -> None:
    bare = postgres_url.replace("postgresql+psycopg2://", "postgresql://")  # SQLAlchemy picks psycopg 3 for it
    check_store(bare)
    check_store(postgres_url)
    spec = parse_spec(SPEC)
    with RolloutStore(bare) as store:
        assert store.engine.dialect.driver == "psycopg"
        store.create_campaign("pg-1", spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
        rollout_batch(store, "pg-1", spec, range(spec.tasks), ReferencePolicy(0.0, 0), FamilyCache())
    with RolloutStore(postgres_url) as store:
        assert store.count(RecordFilter(campaign_id="pg-1")) == 6


def test_settings_accept_the_url_forms_people_write_and_refuse_other_databases() -> None:
    short = Settings(database_url="postgres://someone@db.example/rollouts")
    assert short.store_url == "postgresql://someone@db.example/rollouts"
    assert Settings(database_url="postgresql://someone@db.example/rollouts").store_url.startswith("postgresql://")
    assert Settings(database_url="postgresql+psycopg2://u@h/d").store_url == "postgresql+psycopg2://u@h/d"
    with pytest.raises(ValueError, match=r"SQLite .* or PostgreSQL"):
        Settings(database_url="mysql://someone@db.example/rollouts")
    with pytest.raises(ValueError, match="not a database URL"):
        Settings(database_url="rollouts.db")


def test_an_unreachable_or_refusing_store_is_one_line_naming_it() -> None:
    with pytest.raises(ServiceUnavailable, match=r"cannot open the store at postgresql://postgres@127\.0\.0\.1:1/"):
        check_store("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(ServiceUnavailable, match="refused the credentials") as refused:
        check_store("postgresql://no_such_role_vf:secret@127.0.0.1:5432/test")
    assert "secret" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ServiceUnavailable, match="cannot open the store"):
        check_store("sqlite:////nonexistent-folder-vf/rollouts.db")


@pytest.fixture
def password_redis(tmp_path: Path):
    """A redis-server that requires a password (the embedded one never does)."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "right-password",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://:right-password@127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_broker_check_tells_a_refused_password_from_a_broker_that_is_down(password_redis: int) -> None:
    check_broker(f"redis://:right-password@127.0.0.1:{password_redis}/0")
    with pytest.raises(ServiceUnavailable, match="refused the credentials") as refused:
        check_broker(f"redis://:wrong-password@127.0.0.1:{password_redis}/0")
    assert "wrong-password" not in str(refused.value)
    with pytest.raises(ServiceUnavailable, match="cannot reach the Redis broker"):
        check_broker("redis://127.0.0.1:1/0", timeout_s=1)


def test_urls_in_messages_hide_passwords() -> None:
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert redact_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


def test_a_registry_server_that_does_not_answer_is_named_in_one_line(tmp_path) -> None:
    from verifarm.rollout.services import check_registry

    with pytest.raises(ServiceUnavailable, match=r"cannot reach the checkpoint registry at http://farm:\*\*\*@127"):
        check_registry("http://farm:s3cret@127.0.0.1:1", tmp_path, timeout_s=1)
