"""Command-line commands of verifarm.envs: list the envs, show a task, verify a completion."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from verifarm.envs.catalog import ENV_IDS, accepted_languages, get_family

app = typer.Typer(no_args_is_help=True, help="environment commands")


def complete_env_ids(incomplete: str) -> list[str]:
    """Shell completion of registered env ids (`verifarm/Add<TAB>`)."""
    return [env_id for env_id in ENV_IDS if env_id.startswith(incomplete)]


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, lists, booleans), else as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"options are key=value with a Python identifier as key, got {pair!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
        if isinstance(options[key], list):
            options[key] = tuple(options[key])
    return options


def _family(env_id: str, options: list[str]) -> Any:
    try:
        return get_family(env_id, **parse_options(options))
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command("list")
def list_envs(as_json: bool = typer.Option(False, "--json", help="one JSON array of the rows below")) -> None:
    """Every registered env id with its difficulty range, verifier version and the languages it accepts.

    `--json` fields per env: env_id, min_difficulty, max_difficulty, verifier_version, languages.
    """
    rows: list[dict[str, Any]] = []
    for env_id in ENV_IDS:
        family = get_family(env_id)
        rows.append(
            {
                "env_id": env_id,
                "min_difficulty": family.min_difficulty,
                "max_difficulty": family.max_difficulty,
                "verifier_version": family.verifier_version,
                "languages": list(accepted_languages(env_id)),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        typer.echo(
            f"{row['env_id']:<32} difficulty {row['min_difficulty']}-{row['max_difficulty']:<3} "
            f"verifier {row['verifier_version']:<17} languages {','.join(row['languages']) or '-'}"
        )


def _task(family: Any, seed: int, difficulty: int | None) -> Any:
    """The task a seed poses; a difficulty outside the family's range is bad input, not a crash."""
    chosen = family.min_difficulty if difficulty is None else difficulty
    if not family.min_difficulty <= chosen <= family.max_difficulty:
        raise typer.BadParameter(
            f"difficulty {chosen} is outside this env's range {family.min_difficulty}-{family.max_difficulty}",
            param_hint="'--difficulty'",
        )
    try:
        return family.generate(seed, chosen)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


@app.command("show")
def show(
    env_id: str = typer.Argument(..., help="e.g. verifarm/Addition-v0", autocompletion=complete_env_ids),
    seed: int = typer.Option(0, "--seed", "-s"),
    difficulty: int = typer.Option(None, "--difficulty", "-d", help="default: the env's lowest"),
    option: list[str] = typer.Option([], "--option", "-o", help="family option key=value, e.g. dataset=gcd"),
) -> None:
    """Print the task a seed poses, and its reference completion."""
    family = _family(env_id, option)
    task = _task(family, seed, difficulty)
    typer.echo(f"# {task.task_id}\n# prompt\n{task.prompt}\n# reference completion\n{task.reference}")


@app.command("verify")
def verify(
    env_id: str = typer.Argument(..., help="e.g. verifarm/HumanEval-v0", autocompletion=complete_env_ids),
    completion_file: Path = typer.Argument(..., help="file with the completion; '-' reads standard input"),
    seed: int = typer.Option(0, "--seed", "-s"),
    difficulty: int = typer.Option(None, "--difficulty", "-d", help="default: the env's lowest"),
    option: list[str] = typer.Option([], "--option", "-o", help="family option key=value"),
) -> None:
    """Verify a completion against the task a seed poses; prints the verdict as JSON, exit code 1 unless it passed."""
    if str(completion_file) != "-" and not completion_file.is_file():
        raise typer.BadParameter(
            f"{completion_file} is not a file: give the completion's file, or '-' to read standard input",
            param_hint="'COMPLETION_FILE'",
        )
    family = _family(env_id, option)
    task = _task(family, seed, difficulty)
    raw = sys.stdin.buffer.read() if str(completion_file) == "-" else completion_file.read_bytes()
    verdict = family.verify(task, raw.decode("utf-8", errors="replace"))
    typer.echo(
        json.dumps(
            {
                "task_id": task.task_id,
                "reward": verdict.reward,
                "passed": verdict.passed,
                "reason": verdict.reason,
                "infra_error": verdict.infra_error,
                "details": verdict.details,
            },
            default=str,
            indent=2,
        )
    )
    close = getattr(family, "close", None)
    if close is not None:
        close()
    raise typer.Exit(0 if verdict.passed else 1)
