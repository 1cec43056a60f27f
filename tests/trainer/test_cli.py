"""`verifarm train status` / `eval` on a real registry and store."""

from __future__ import annotations

from typer.testing import CliRunner

from verifarm.cli import app as root_app
from verifarm.trainer.cli import app

from .trainer_helpers import small_trainer_config


def test_eval_records_metrics_and_status_shows_them(farm_home, tmp_path):
    config_path = tmp_path / "trainer.yaml"
    small_trainer_config().to_yaml(config_path)
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "policy v1" in result.output and "pass@1=" in result.output

    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "not running" in result.output and "v1" in result.output and "d1:" in result.output


def test_run_refuses_an_empty_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFARM_HOME", str(tmp_path / "empty"))
    result = CliRunner().invoke(root_app, ["train", "run", "--max-steps", "1"])
    assert result.exit_code == 1 and "no good policy version" in result.stderr and "policy init" in result.stderr


def test_start_status_stop_a_daemon_that_publishes_on_stop(farm_home, tmp_path):
    import time

    from verifarm.policy.registry import CheckpointRegistry

    config_path = tmp_path / "trainer.yaml"
    # Pre-training only: the daemon always has data, so it is mid-run when stopped.
    small_trainer_config(
        schedule={"pretrain_steps": 1, "posttrain_steps": 0}, publish_every=1000, evaluate_on_publish=False
    ).to_yaml(config_path)
    runner = CliRunner()
    result = runner.invoke(app, ["start", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    try:
        again = runner.invoke(root_app, ["train", "start"])
        assert again.exit_code == 1 and "already running" in again.stderr
        log = farm_home / "trainer" / "trainer.log"
        deadline = time.monotonic() + 120
        while "trainer at policy v1" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "running (pid" in runner.invoke(app, ["status"]).output
        time.sleep(2)  # a few steps
    finally:
        stopped = runner.invoke(app, ["stop"])
    assert stopped.exit_code == 0 and "stopped" in stopped.output, stopped.output + log.read_text()[-2000:]
    latest = CheckpointRegistry(farm_home / "checkpoints").load(None)
    assert latest.version == 2 and latest.metadata["trainer_step"] >= 1
    assert "not running" in runner.invoke(app, ["status"]).output
