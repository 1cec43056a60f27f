"""``verifarm verify``: audit an env's verdicts against labelled cases (see ``verifarm.envs.audit``)."""

from __future__ import annotations

from pathlib import Path

import typer

from verifarm.envs.audit import format_report, load_cases, run_audit

app = typer.Typer(no_args_is_help=True, help="verdict audits: labelled cases through an env's real verifier")


@app.command("audit")
def audit(
    env_id: str = typer.Argument(..., help="the env whose verifier is audited, e.g. verifarm/MathAnswer-v0"),
    cases_path: Path = typer.Argument(..., metavar="CASES", help="JSONL file of labelled cases"),
    differential: bool = typer.Option(
        False,
        "--differential",
        help="also score answer pairs with the env's second implementations "
        "(math-verify alone, sympy alone) and list where they disagree",
    ),
    every_case: bool = typer.Option(False, "--every-case", help="list every case with its verdict and time"),
) -> None:
    """Run labelled cases through ENV_ID's generate and verify; exit 1 on any wrong verdict, 2 on bad input."""
    try:
        cases = load_cases(cases_path)
        report = run_audit(env_id, cases, differential=differential)
    except ValueError as error:  # CaseError, an unknown env id, bad family options
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_report(report, str(cases_path), every_case=every_case))
    if report.wrong:
        raise typer.Exit(1)
