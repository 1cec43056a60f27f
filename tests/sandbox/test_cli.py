"""The sandbox CLI end to end: info, build-image and the interim main job check-humaneval."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.sandbox.selection import default_backend_name, probe_backend

runner = CliRunner()


def test_info_lists_every_backend_and_the_default():
    result = runner.invoke(app, ["sandbox", "info"])
    assert result.exit_code == 0, result.output
    for name in ("docker", "bwrap", "process"):
        assert name in result.output
    assert f"default backend: {default_backend_name()}" in result.output


@pytest.mark.skipif(probe_backend("docker") is not None, reason="no docker engine running")
def test_build_image_is_idempotent():
    first = runner.invoke(app, ["sandbox", "build-image"])
    second = runner.invoke(app, ["sandbox", "build-image"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "already present: verifarm-sandbox:" in second.output


def test_check_humaneval_prints_verdicts_and_the_backend():
    result = runner.invoke(app, ["sandbox", "check-humaneval", "--limit", "3", "--mutate"])
    assert result.exit_code == 0, result.output
    assert f"sandbox backend: {default_backend_name()}" in result.output
    assert "HumanEval/0" in result.output and "HumanEval/2" in result.output
    assert "6/6 verdicts as expected" in result.output


def test_check_humaneval_warns_on_the_process_backend():
    result = runner.invoke(app, ["sandbox", "check-humaneval", "--limit", "1", "--backend", "process"])
    assert result.exit_code == 0, result.output
    assert "does not isolate" in result.output


def test_check_humaneval_rejects_a_bad_limit():
    assert runner.invoke(app, ["sandbox", "check-humaneval", "--limit", "0"]).exit_code != 0
