"""Command-line commands of verifarm.trainer (heavy imports stay inside the commands)."""

import typer

app = typer.Typer(no_args_is_help=True, help="trainer commands")
