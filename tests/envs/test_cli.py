"""The envs CLI: list, show and verify, run through Typer's runner on real families."""

from typer.testing import CliRunner

from verifarm.envs.catalog import ENV_IDS, get_family
from verifarm.envs.cli import app

runner = CliRunner()


def test_list_names_every_env() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for env_id in ENV_IDS:
        assert env_id in result.output


def test_show_prints_the_seeded_task() -> None:
    task = get_family("verifarm/Arithmetic-v0", operations=("*",)).generate(5, 3)
    result = runner.invoke(app, ["show", "verifarm/Arithmetic-v0", "-s", "5", "-d", "3", "-o", 'operations=["*"]'])
    assert result.exit_code == 0, result.output
    assert task.prompt in result.output and task.reference in result.output


def test_verify_reads_a_completion_and_exits_by_verdict(tmp_path) -> None:
    task = get_family("verifarm/ReasoningGym-v0", dataset="gcd").generate(2, 1)
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text(task.reference)
    bad.write_bytes(b"\xff\xfe no answer")
    args = ["verify", "verifarm/ReasoningGym-v0", "-s", "2", "-o", "dataset=gcd"]
    passed = runner.invoke(app, [*args[:2], str(good), *args[2:]])
    assert passed.exit_code == 0 and '"passed": true' in passed.output, passed.output
    failed = runner.invoke(app, [*args[:2], str(bad), *args[2:]])
    assert failed.exit_code == 1 and "no <answer>" in failed.output, failed.output


def test_bad_options_are_reported_not_raised() -> None:
    result = runner.invoke(app, ["show", "verifarm/ReasoningGym-v0", "-o", "dataset=nope"])
    assert result.exit_code != 0 and "unknown reasoning-gym dataset" in result.output
    result = runner.invoke(app, ["show", "verifarm/Addition-v0", "-o", "no-equals-sign"])
    assert result.exit_code != 0
