"""`verifarm train status` / `eval` on a real registry and store."""

from __future__ import annotations

from typer.testing import CliRunner

from verifarm.trainer.cli import app
from trainer_helpers import small_trainer_config


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
    result = CliRunner().invoke(app, ["run", "--max-steps", "1"])
    assert result.exit_code == 2 and "no good policy version" in result.output
