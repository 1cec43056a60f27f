"""Command-line commands of verifarm.trainer (heavy imports stay inside the commands).

`verifarm train run` trains in the foreground; `start` / `stop` / `status` manage it as a daemon whose pid
file and log live under VERIFARM_HOME/trainer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="the continual-training daemon")

ConfigOption = typer.Option(None, "--config", "-c", help="trainer config YAML (TrainerConfig fields)")


def _trainer_home() -> Path:
    from verifarm.settings import load_settings

    return load_settings().home / "trainer"


def _pid_file() -> Path:
    return _trainer_home() / "trainer.pid"


def _log_file() -> Path:
    return _trainer_home() / "trainer.log"


def _running_pid() -> int | None:
    """The daemon's pid if its pid file names a live process, else None (a stale pid file is removed)."""
    path = _pid_file()
    if not path.is_file():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    return pid


def _load_config(config: Optional[Path]):
    from verifarm.trainer.config import TrainerConfig

    return TrainerConfig.from_yaml(config) if config else TrainerConfig()


@app.command()
def run(
    config: Optional[Path] = ConfigOption,
    max_steps: Optional[int] = typer.Option(None, help="stop after this many steps (default: run until stopped)"),
    until_step: Optional[int] = typer.Option(None, help="stop at this total step (counted across restarts)"),
    until_idle: bool = typer.Option(False, help="stop when no fresh post-training data is left"),
    state_dir: Optional[Path] = typer.Option(None, help="trainer state folder (default VERIFARM_HOME/trainer/state)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every step"),
) -> None:
    """Train in the foreground: SIGTERM or Ctrl-C stops after the current step and publishes what it has."""
    import logging

    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.rollout.store import RolloutStore
    from verifarm.settings import load_settings
    from verifarm.trainer.daemon import ContinualTrainer

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    registry = CheckpointRegistry(settings.checkpoints)
    if registry.latest_version() is None:
        typer.echo(f"no good policy version in {settings.checkpoints}: publish one first "
                   "(verifarm demo pre-trains one)", err=True)
        raise typer.Exit(2)
    settings.home.mkdir(parents=True, exist_ok=True)
    store = RolloutStore(settings.store_url)
    stop_requested = []

    def request_stop(signum, _frame):
        stop_requested.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    trainer = ContinualTrainer(_load_config(config), registry, store, state_dir or _trainer_home() / "state")
    published = trainer.run(max_steps=max_steps, until_step=until_step, until_idle=until_idle,
                            should_stop=lambda: bool(stop_requested))
    for report in published:
        typer.echo(f"published v{report.version} at step {report.step}")
    store.close()


@app.command()
def start(
    config: Optional[Path] = ConfigOption,
    state_dir: Optional[Path] = typer.Option(None, help="trainer state folder"),
) -> None:
    """Start the trainer as a background daemon (pid file and log under VERIFARM_HOME/trainer)."""
    pid = _running_pid()
    if pid is not None:
        typer.echo(f"the trainer is already running (pid {pid}); `verifarm train stop` first", err=True)
        raise typer.Exit(1)
    home = _trainer_home()
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "verifarm.trainer.cli", "run"]
    if config:
        command += ["--config", str(Path(config).resolve())]
    if state_dir:
        command += ["--state-dir", str(Path(state_dir).resolve())]
    with open(_log_file(), "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    _pid_file().write_text(str(process.pid))
    typer.echo(f"trainer started (pid {process.pid}); log: {_log_file()}")


@app.command()
def stop(timeout: float = typer.Option(120.0, help="seconds to wait for the final publish before SIGKILL")) -> None:
    """Ask the daemon to stop (SIGTERM: it publishes its last steps), killing it after `timeout` seconds."""
    pid = _running_pid()
    if pid is None:
        typer.echo("the trainer is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.5)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        typer.echo(f"trainer (pid {pid}) did not stop in {timeout:.0f}s and was killed; it resumes from its "
                   "last published version")
    else:
        typer.echo(f"trainer (pid {pid}) stopped")
    _pid_file().unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@app.command()
def status(last: int = typer.Option(10, help="how many of the newest versions to show")) -> None:
    """Whether the daemon runs, and the newest policy versions with their evaluation metrics."""
    from rich.console import Console
    from rich.table import Table

    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.rollout.store import RolloutStore
    from verifarm.settings import load_settings

    settings = load_settings()
    pid = _running_pid()
    typer.echo(f"trainer: {'running (pid %d)' % pid if pid else 'not running'}; log {_log_file()}")
    registry = CheckpointRegistry(settings.checkpoints)
    versions = registry.versions()[-last:]
    if not versions:
        typer.echo(f"no policy versions in {settings.checkpoints}")
        return
    metrics_by_version: dict[int, dict[str, float]] = {}
    if settings.home.is_dir() or settings.database_url:
        with RolloutStore(settings.store_url) as store:
            for entry in store.metrics():
                metrics_by_version.setdefault(entry.policy_version, {}).update(entry.metrics)
    table = Table(title="policy versions")
    for column in ("version", "ok", "step", "pass@1 by difficulty", "held-out loss", "records used/stale"):
        table.add_column(column)
    for info in versions:
        metrics = metrics_by_version.get(info.version, {})
        table.add_row(
            f"v{info.version}",
            "yes" if info.ok else "CORRUPT",
            str(info.metadata.get("trainer_step", "-")),
            _pass_at_1_summary(metrics),
            f"{metrics['heldout_loss']:.4f}" if "heldout_loss" in metrics else "-",
            f"{metrics.get('records_used', 0):.0f}/{metrics.get('records_skipped_stale', 0):.0f}"
            if "records_used" in metrics else "-",
        )
    Console().print(table)


def _pass_at_1_summary(metrics: dict[str, float]) -> str:
    parts = [f"{name.split('/')[-2]}:{value:.0%}" for name, value in sorted(metrics.items(), key=_difficulty_key)
             if name.endswith("/pass@1")]
    return " ".join(parts) or "-"


def _difficulty_key(item: tuple[str, float]):
    name = item[0]
    pieces = name.split("/")
    if len(pieces) >= 3 and pieces[-2].startswith("d") and pieces[-2][1:].isdigit():
        return (pieces[0], int(pieces[-2][1:]))
    return (name, 0)


@app.command("eval")
def evaluate(
    version: Optional[int] = typer.Option(None, help="policy version (default: the newest good one)"),
    config: Optional[Path] = ConfigOption,
    record: bool = typer.Option(True, help="store the metrics for this version"),
) -> None:
    """Evaluate one version on the held-out tasks (pass@1 greedy, pass@k) and print the table."""
    import torch

    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.sampling import LocalPolicy
    from verifarm.rollout.store import RolloutStore
    from verifarm.settings import load_settings
    from verifarm.trainer.corpus import build_corpus
    from verifarm.trainer.evaluate import evaluate_policy

    trainer_config = _load_config(config)
    torch.set_num_threads(trainer_config.torch_threads)
    settings = load_settings()
    loaded = CheckpointRegistry(settings.checkpoints).load(version)
    policy = LocalPolicy(loaded.model, loaded.tokenizer, version=loaded.version)
    corpus = build_corpus(trainer_config.corpus)
    report = evaluate_policy(policy, trainer_config.evaluation, corpus.heldout, trainer_config.max_seq_len)
    typer.echo(report.table())
    if record:
        with RolloutStore(settings.store_url) as store:
            store.record_metrics(loaded.version, report.metrics(), step=int(loaded.metadata.get("trainer_step", 0)))


if __name__ == "__main__":
    app()
