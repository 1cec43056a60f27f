"""The farm's settings travel explicitly: a FarmConfig decides the sandbox backend in the process that holds it,
and a WorkerPool's workers follow the pool's FarmConfig (handed over on stdin, into the Celery config), whatever
VERIFARM_* variables the starting process has."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifarm.rollout.app import WorkerRuntime
from verifarm.rollout.broker import farm_of, sender_app
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.orchestration import PoolCampaigns, store_campaign
from verifarm.rollout.pool import WorkerPool
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.settings import FarmTuning, Settings

SPEC = parse_spec(
    {
        "name": "sandboxed",
        "envs": [{"env_id": "verifarm/PythonFunction-v0"}],
        "tasks": 3,
        "samples_per_task": 1,
        "batch_size": 3,
        "policy": "reference",
    }
)


def test_the_farms_sandbox_backend_decides_in_the_process_that_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment names another backend; the FarmConfig's choice must win, with no os.environ round trip.
    monkeypatch.setenv("VERIFARM_SANDBOX_BACKEND", "docker")
    farm = FarmConfig(
        broker_url="redis://127.0.0.1:1/0",
        store_url=f"sqlite:///{tmp_path / 'rollouts.db'}",
        checkpoint_dir=tmp_path / "checkpoints",
        sandbox_backend="process",
    )
    runtime = WorkerRuntime(farm)
    campaign_id = store_campaign(runtime.store, SPEC)
    report = runtime.run_batch(campaign_id, 0)
    assert report["records_written"] == 3 and report["passed"] == 3
    records = runtime.store.query(RecordFilter(campaign_id=campaign_id))
    assert {r.sandbox_backend for r in records} == {"process"}
    runtime.store.close()


def test_settings_resolve_once_with_the_farm_tuning_nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERIFARM_FARM_INFRA_RETRIES", "5")
    monkeypatch.setenv("VERIFARM_SANDBOX_BACKEND", "process")
    settings = Settings(home=tmp_path)
    farm = FarmConfig.from_settings(settings, broker_url="redis://127.0.0.1:1/0")
    assert farm.tuning == settings.farm == FarmTuning(infra_retries=5)
    assert farm.sandbox_backend == "process"
    assert farm.store_url == f"sqlite:///{(tmp_path / 'rollouts.db').resolve()}"
    assert farm_of(sender_app(farm)) == farm  # what every worker of the app receives
    assert settings.existing_store_url() is None  # nothing stored yet: readers never create an empty store
    (tmp_path / "rollouts.db").touch()
    assert settings.existing_store_url() == farm.store_url


@pytest.mark.slow
def test_a_worker_pool_follows_its_farm_config_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real worker processes: the parent's VERIFARM_* variables point elsewhere, yet the campaign completes in
    the pool's store, verified on the pool's sandbox backend."""
    monkeypatch.setenv("VERIFARM_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("VERIFARM_SANDBOX_BACKEND", "docker")
    monkeypatch.setenv("VERIFARM_FARM_INFRA_RETRIES", "0")
    server = EmbeddedRedis(tmp_path / "broker")
    url, pid = server.start()
    farm = FarmConfig(
        broker_url=url,
        store_url=f"sqlite:///{tmp_path / 'rollouts.db'}",
        checkpoint_dir=tmp_path / "checkpoints",
        sandbox_backend="process",
        tuning=FarmTuning(reconcile_interval_s=3600),
    )
    try:
        with WorkerPool(farm, tmp_path / "logs", processes=1, concurrency=1, name="flow") as pool:
            pool.wait_ready(timeout_s=180)
            final = PoolCampaigns(farm, pool, timeout_seconds=180).run(SPEC)
    finally:
        server.stop(pid)
    assert final.state == "done" and final.passed == 3
    with RolloutStore(farm.store_url) as store:
        records = store.query(RecordFilter(campaign_id=final.campaign_id))
    assert {r.sandbox_backend for r in records} == {"process"}
    assert not (tmp_path / "elsewhere.db").exists()
