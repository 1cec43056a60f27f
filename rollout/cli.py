"""Command-line commands of verifarm.rollout (heavy imports stay inside the commands)."""

import typer

workers_app = typer.Typer(no_args_is_help=True, help="the rollout worker pool")
campaign_app = typer.Typer(no_args_is_help=True, help="rollout campaigns")
data_app = typer.Typer(no_args_is_help=True, help="the collected datasets")
