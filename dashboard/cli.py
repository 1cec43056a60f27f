"""`verifarm dashboard`: serve the dashboard for the farm of the current settings."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer
from pydantic import ValidationError

from verifarm.dashboard.config import DashboardConfig
from verifarm.policy.asgi import PortUnavailable, bind_socket, serve_forever
from verifarm.redaction import redact_url
from verifarm.settings import load_settings


def dashboard(
    host: str = typer.Option(
        "127.0.0.1",
        help="address to bind (the dashboard has no login: keep it local, or put an authenticating proxy in front)",
    ),
    port: int = typer.Option(8265, help="port to bind"),
    flower_url: str | None = typer.Option(None, help="link to this Flower on the workers page when it answers"),
    tensorboard_dir: Path | None = typer.Option(
        None, help="the trainer's event files (default VERIFARM_HOME/trainer/tensorboard)"
    ),
    page_size: int = typer.Option(50, min=1, max=500, help="records per page of the dataset browser"),
) -> None:
    """A read-only web view of campaigns, datasets, training curves, policy versions and workers."""
    from sqlalchemy.exc import SQLAlchemyError

    # deferred: the web app and the store it opens (seconds of imports) load only when the dashboard runs
    from verifarm.dashboard.app import create_app

    try:
        config = DashboardConfig.from_settings(
            load_settings(), flower_url=flower_url, tensorboard_dir=tensorboard_dir, page_size=page_size
        )
        sock = bind_socket(host, port)
    except (PortUnavailable, ValueError, ValidationError) as error:
        message = (
            str(error).splitlines()[0]
            if not isinstance(error, ValidationError)
            else "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        )
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    try:
        app = create_app(config)
    except SQLAlchemyError as error:
        sock.close()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        typer.secho(
            f"error: cannot open the store at {redact_url(config.store_url)}: {reason} (set "
            "VERIFARM_HOME or VERIFARM_DATABASE_URL to the farm's store)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2) from error
    bound_host, bound_port = sock.getsockname()[:2]
    if not ipaddress.ip_address(bound_host).is_loopback:
        typer.secho(
            f"warning: the dashboard has no login and {bound_host} is reachable from other machines; "
            "anyone who can reach it can read the farm's data and cancel campaigns",
            fg=typer.colors.YELLOW,
            err=True,
        )
    typer.echo(f"verifarm dashboard on http://{bound_host}:{bound_port}/")
    serve_forever(app, sock)
