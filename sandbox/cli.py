"""Command-line commands of verifarm.sandbox (heavy imports stay inside the commands)."""

import typer

app = typer.Typer(no_args_is_help=True, help="sandbox commands")
