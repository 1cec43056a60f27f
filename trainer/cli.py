"""Command-line commands of verifarm.trainer (heavy imports stay inside the commands).

`verifarm train run` trains in the foreground; `start` / `stop` / `status` manage it as a daemon whose pid
file and log live under VERIFARM_HOME/trainer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import typer
import yaml

from verifarm.cli_errors import BadInput, Failure
from verifarm.policy.cli import complete_policy_versions
from verifarm.policy.registry import CheckpointRegistry, CorruptCheckpoint
from verifarm.processes import process_alive
from verifarm.rollout.services import ServiceUnavailable, check_store
from verifarm.rollout.store import RolloutStore
from verifarm.settings import Settings, load_settings
from verifarm.terminal import ProgressReporter
from verifarm.trainer.config import TrainerConfig
from verifarm.trainer.corpus import build_corpus
from verifarm.trainer.evaluate import evaluate_policy, latest_evaluations

app = typer.Typer(no_args_is_help=True, help="the continual-training daemon")

ConfigOption = typer.Option(None, "--config", "-c", help="trainer config YAML (TrainerConfig fields)")
FreshOption = typer.Option(
    False, "--fresh", help="start a new trainer state from the newest version instead of resuming the one it names"
)


def _bad_input(message: str) -> NoReturn:
    raise BadInput(message)


def _failed(message: str) -> NoReturn:
    raise Failure(message)


def _trainer_home() -> Path:
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
    except ValueError:
        path.unlink(missing_ok=True)
        return None
    if not process_alive(pid):
        path.unlink(missing_ok=True)
        return None
    return pid


def _load_config(config: Path | None):
    """The trainer config; a missing file or a bad value is bad input, reported in one line."""
    if config is None:
        return TrainerConfig()
    if not config.is_file():
        _bad_input(f"trainer config {config} does not exist: give a YAML file of TrainerConfig fields")
    try:
        return TrainerConfig.from_yaml(config)
    except (ValueError, TypeError, yaml.YAMLError) as error:
        _bad_input(f"trainer config {config}: {error}")


def _ready_to_train(settings: Settings) -> None:
    """Refuse, in one line, to train without a good policy version or a usable store."""
    if CheckpointRegistry(settings.checkpoints).latest_version() is None:
        _failed(f"no good policy version in {settings.checkpoints}: publish one first with `verifarm policy init`")
    if not settings.database_url:
        settings.home.mkdir(parents=True, exist_ok=True)  # the default SQLite store lives there
    try:
        check_store(settings.store_url)
    except ServiceUnavailable as error:
        _failed(str(error))


def _mode_label(report) -> str:
    return f"{report.kind} (waiting)" if report.while_waiting else report.kind


@app.command()
def run(
    config: Path | None = ConfigOption,
    max_steps: int | None = typer.Option(
        None, min=1, help="stop after this many steps, whatever it waits for (default: run until stopped)"
    ),
    until_step: int | None = typer.Option(None, min=1, help="stop at this total step (counted across restarts)"),
    until_idle: bool = typer.Option(False, help="stop when no fresh post-training data is left"),
    state_dir: Path | None = typer.Option(None, help="trainer state folder (default VERIFARM_HOME/trainer/state)"),
    fresh: bool = FreshOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every step"),
) -> None:
    """Train in the foreground: SIGTERM or Ctrl-C stops after the current step and publishes what it has.

    While no fresh post-training data exists it says what it waits for and takes pre-training steps meanwhile.
    Progress (step, mode, loss, tokens/s) is a bar on a terminal and a plain line every few seconds otherwise.
    Under `torchrun --nproc-per-node N` it trains data-parallel on N processes (rank 0 reads data and publishes).
    """
    import logging

    # deferred: the trainer imports torch, which the daemon's other commands do not need
    from verifarm.trainer.daemon import ContinualTrainer, TrainerStateMismatch

    # deferred: like the trainer, data-parallel training imports torch
    from verifarm.trainer.distributed import DataParallel

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    trainer_config = _load_config(config)
    settings = load_settings()
    _ready_to_train(settings)
    registry = CheckpointRegistry(settings.checkpoints)
    store = RolloutStore(settings.store_url)
    parallel = DataParallel.from_environment()
    stop_requested = []

    def request_stop(signum, _frame):
        stop_requested.append(signum)

    try:
        try:
            trainer = ContinualTrainer(
                trainer_config, registry, store, state_dir or _trainer_home() / "state", fresh=fresh, parallel=parallel
            )
        except TrainerStateMismatch as error:
            _failed(str(error))
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        total = until_step - trainer.step_index if until_step else max_steps
        title = "train" if parallel is None else f"train rank {parallel.rank}/{parallel.world_size}"
        with ProgressReporter(title, total=total, fields=("step", "mode", "loss", "tokens/s")) as progress:
            taken = [0]

            def on_step(report) -> None:
                taken[0] += 1
                rate = report.tokens / report.seconds if report.seconds > 0 else 0.0
                progress.update(
                    taken[0],
                    step=report.step,
                    mode=_mode_label(report),
                    loss=f"{report.loss:.4f}",
                    **{"tokens/s": f"{rate:,.0f}"},
                )

            if trainer_config.curriculum is not None:
                _run_curriculum(trainer, registry, store, progress, stop_requested)
                return
            meanwhile = "pre-training meanwhile" if trainer_config.schedule.pretrain_steps else "polling"

            def on_wait(waiting_for: str | None) -> None:
                progress.note(f"waiting for {waiting_for}; {meanwhile}" if waiting_for else "")

            published = trainer.run(
                max_steps=max_steps,
                until_step=until_step,
                until_idle=until_idle,
                should_stop=lambda: bool(stop_requested),
                on_step=on_step,
                on_wait=on_wait,
            )
        for report in published if trainer.is_primary else []:
            typer.echo(f"published v{report.version} at step {report.step}")
    finally:
        store.close()
        if parallel is not None:
            parallel.close()


def _run_curriculum(trainer, registry, store, progress, stop_requested: list) -> None:
    """The config's frontier curriculum: the daemon rolls out its own campaigns in this process, round by round."""
    # deferred: torch and the rollout machinery load only when a curriculum runs, not on every `verifarm train`
    from verifarm.rollout.orchestration import InProcessCampaigns
    from verifarm.trainer.frontier import round_line, run_frontier

    campaigns = InProcessCampaigns(store, registry.root)
    state = run_frontier(trainer, campaigns, say=progress.note, should_stop=lambda: bool(stop_requested))
    for entry in state.history:
        typer.echo(round_line(entry))
    goal = trainer.config.curriculum.target_digits
    typer.echo(
        f"frontier {state.frontier} digits after {state.rounds} rounds"
        + (" (target reached)" if state.frontier >= goal else f" (target {goal})")
    )


@app.command()
def start(
    config: Path | None = ConfigOption,
    state_dir: Path | None = typer.Option(None, help="trainer state folder"),
    fresh: bool = FreshOption,
) -> None:
    """Start the trainer as a background daemon (pid file and log under VERIFARM_HOME/trainer)."""
    pid = _running_pid()
    if pid is not None:
        _failed(f"the trainer is already running (pid {pid}): `verifarm train stop` first")
    _load_config(config)
    _ready_to_train(load_settings())
    home = _trainer_home()
    home.mkdir(parents=True, exist_ok=True)
    # Through the root command, so that a refusal is one "error: ..." line in the log.
    command = [sys.executable, "-m", "verifarm.cli", "train", "run"]
    if config:
        command += ["--config", str(Path(config).resolve())]
    if state_dir:
        command += ["--state-dir", str(Path(state_dir).resolve())]
    if fresh:
        command += ["--fresh"]
    log_start = _log_file().stat().st_size if _log_file().exists() else 0
    with open(_log_file(), "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _pid_file().write_text(str(process.pid))
    # Wait until it has loaded its policy and state ("trainer at policy v..."): one that refuses them exits, and
    # the reason is said here, not only in the log.
    deadline = time.monotonic() + 180.0
    lines: list[str] = []
    while time.monotonic() < deadline and process.poll() is None:
        lines = _log_lines_since(log_start)
        if any("trainer at policy v" in line for line in lines):
            break
        time.sleep(0.2)
    if process.poll() is not None and process.returncode != 0:
        _pid_file().unlink(missing_ok=True)
        lines = _log_lines_since(log_start)
        reason = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        _failed(f"the trainer exited at once: {reason.removeprefix('error: ') or 'no output'} (log: {_log_file()})")
    typer.echo(f"trainer started (pid {process.pid}); log: {_log_file()}")


def _log_lines_since(offset: int) -> list[str]:
    with open(_log_file(), "rb") as log:
        log.seek(offset)
        return [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]


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
        typer.echo(
            f"trainer (pid {pid}) did not stop in {timeout:.0f}s and was killed; it resumes from its "
            "last published version"
        )
    else:
        typer.echo(f"trainer (pid {pid}) stopped")
    _pid_file().unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    return process_alive(pid)


@app.command()
def status(
    last: int = typer.Option(10, min=1, help="how many of the newest versions to show"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object: the daemon and the versions"),
) -> None:
    """Whether the daemon runs, and the newest policy versions with their evaluation metrics.

    `--json` prints {"running": bool, "pid": int|null, "log": path, "versions": [...]}, each version with
    version, ok, trainer_step (or null), metrics (name -> value: `<env>/d<difficulty>/pass@1`, heldout_loss,
    records_used, ...).
    """
    from rich.console import Console
    from rich.table import Table

    settings = load_settings()
    pid = _running_pid()
    versions = CheckpointRegistry(settings.checkpoints).versions()[-last:]
    store_url = settings.existing_store_url() if versions else None
    metrics_by_version: dict[int, dict[str, float]] = {}
    if store_url is not None:
        with RolloutStore(store_url) as store:
            metrics_by_version = latest_evaluations(store)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "running": pid is not None,
                    "pid": pid,
                    "log": str(_log_file()),
                    "versions": [
                        {
                            "version": info.version,
                            "ok": info.ok,
                            "trainer_step": info.metadata.get("trainer_step"),
                            "metrics": metrics_by_version.get(info.version, {}),
                        }
                        for info in versions
                    ],
                }
            )
        )
        return
    typer.echo(f"trainer: {f'running (pid {pid})' if pid else 'not running'}; log {_log_file()}")
    if not versions:
        typer.echo(f"no policy versions in {settings.checkpoints}")
        return
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
            if "records_used" in metrics
            else "-",
        )
    Console().print(table)


def _pass_at_1_summary(metrics: dict[str, float]) -> str:
    parts = [
        f"{name.split('/')[-2]}:{value:.0%}"
        for name, value in sorted(metrics.items(), key=_difficulty_key)
        if name.endswith("/pass@1")
    ]
    return " ".join(parts) or "-"


def _difficulty_key(item: tuple[str, float]):
    name = item[0]
    pieces = name.split("/")
    if len(pieces) >= 3 and pieces[-2].startswith("d") and pieces[-2][1:].isdigit():
        return (pieces[0], int(pieces[-2][1:]))
    return (name, 0)


@app.command("eval")
def evaluate(
    version: int | None = typer.Option(
        None, min=1, help="policy version (default: the newest good one)", autocompletion=complete_policy_versions
    ),
    config: Path | None = ConfigOption,
    record: bool = typer.Option(True, help="store the metrics for this version"),
) -> None:
    """Evaluate one version on the held-out tasks (pass@1 greedy, pass@k) and print the table."""
    import torch

    # deferred: imports torch and transformers
    from verifarm.policy.sampling import LocalPolicy

    trainer_config = _load_config(config)
    torch.set_num_threads(trainer_config.torch_threads)
    settings = load_settings()
    registry = CheckpointRegistry(settings.checkpoints)
    published = registry.published_versions()
    if version is not None and version not in published:
        _bad_input(
            f"no policy version {version} in {settings.checkpoints} (published: "
            f"{', '.join(map(str, published)) or 'none'}): `verifarm policy ls` lists them"
        )
    if version is None and registry.latest_version() is None:
        _failed(f"no good policy version in {settings.checkpoints}: publish one first with `verifarm policy init`")
    try:
        loaded = registry.load(version)
    except CorruptCheckpoint as error:
        _failed(f"{error}: evaluate another version (`verifarm policy verify` checks them all)")
    policy = LocalPolicy(loaded.model, loaded.tokenizer, version=loaded.version)
    corpus = build_corpus(trainer_config.corpus)
    report = evaluate_policy(policy, trainer_config.evaluation, corpus.heldout, trainer_config.max_seq_len)
    typer.echo(report.table())
    if record:
        with RolloutStore(settings.store_url) as store:
            store.record_metrics(loaded.version, report.metrics(), step=int(loaded.metadata.get("trainer_step", 0)))


if __name__ == "__main__":
    app()
