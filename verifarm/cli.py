"""The `verifarm` command: each part contributes its own sub-commands."""

import os

import typer

from verifarm.cli_errors import VerifarmGroup
from verifarm.dashboard.cli import dashboard
from verifarm.envs.cli import app as envs_app
from verifarm.envs.verify_cli import app as verify_app
from verifarm.policy.server import serve
from verifarm.policy_cli import app as policy_app
from verifarm.rollout.cli import campaign_app, data_app, workers_app
from verifarm.sandbox.cli import app as sandbox_app
from verifarm.trainer.cli import app as train_app
from verifarm.trainer.demo import demo

# Saving and loading checkpoints is routine here: no progress bar per shard (worker processes inherit this).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    no_args_is_help=True,
    help="verifarm: a rollout farm for verifiable domains",
    cls=VerifarmGroup,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of a failure instead of one line"),
) -> None:
    """verifarm: a rollout farm for verifiable domains."""
    if debug and isinstance(ctx.command, VerifarmGroup):
        ctx.command.show_tracebacks = True


app.command("demo")(demo)
app.command("serve")(serve)
app.command("dashboard")(dashboard)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(envs_app, name="envs")
app.add_typer(verify_app, name="verify")
app.add_typer(policy_app, name="policy")
app.add_typer(workers_app, name="workers")
app.add_typer(campaign_app, name="campaign")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

if __name__ == "__main__":
    app()
