"""Command-line commands of verifarm.rollout (heavy imports stay inside the commands).

With no VERIFARM_REDIS_URL, commands that need a broker start a private Redis under VERIFARM_HOME for the
session (or use the one `workers start` keeps running). Progress, status and data need only the store.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

workers_app = typer.Typer(no_args_is_help=True, help="the rollout worker pool")
campaign_app = typer.Typer(no_args_is_help=True, help="rollout campaigns")
data_app = typer.Typer(no_args_is_help=True, help="the collected datasets")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _store_url() -> str:
    """Commands that only read or flag the store need no broker."""
    from verifarm.settings import load_settings

    return load_settings().store_url


# ---- workers ---------------------------------------------------------------------------------------------


@workers_app.command("start")
def workers_start(
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", min=1,
                                              help="pool processes (default: one per CPU core)"),
    name: str = typer.Option("verifarm@%h", "--name", "-n", help="worker node name (%h: host name)"),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
) -> None:
    """Start a pool of rollout workers (blocks; Ctrl-C stops it, and the private Redis if it started one)."""
    from verifarm.rollout.app import QUEUE, create_app
    from verifarm.rollout.config import FarmConfig
    from verifarm.rollout.embedded_redis import session_broker
    from verifarm.settings import load_settings

    settings = load_settings()
    with session_broker(settings.redis_url, settings.home) as broker_url:
        farm = FarmConfig.from_settings(settings, broker_url=broker_url)
        typer.echo(f"broker {broker_url}  store {farm.store_url}  checkpoints {farm.checkpoint_dir}", err=True)
        app = create_app(farm)
        concurrency = concurrency or os.cpu_count() or 1
        # No gossip or mingle: the farm keeps its state in the store, not in worker-to-worker chatter.
        app.worker_main(["worker", f"--concurrency={concurrency}", f"--hostname={name}",
                         f"--loglevel={loglevel}", f"--queues={QUEUE}", "--pool=prefork", "--without-gossip",
                         "--without-mingle"])


@workers_app.command("ls")
def workers_ls(timeout: float = typer.Option(2.0, help="seconds to wait for answers")) -> None:
    """List the workers that answer a ping and what they are running."""
    from verifarm.rollout.app import create_app
    from verifarm.rollout.config import FarmConfig
    from verifarm.settings import load_settings

    try:
        farm = FarmConfig.from_settings(load_settings())
    except ValueError as error:
        _fail(str(error))
    inspector = create_app(farm).control.inspect(timeout=timeout)
    active = inspector.active() or {}
    if not active:
        typer.echo("no workers answered")
    for worker, tasks in sorted(active.items()):
        running = ", ".join(str(task.get("args")) for task in tasks) or "idle"
        typer.echo(f"{worker}: {running}")


# ---- campaigns -------------------------------------------------------------------------------------------


@campaign_app.command("submit")
def campaign_submit(
    spec_path: Path = typer.Argument(..., help="campaign spec, .yaml or .json"),
    campaign_id: Optional[str] = typer.Option(None, "--id", help="campaign id (default: name + random suffix)"),
) -> None:
    """Validate a spec, store the campaign and enqueue its batches. Prints the campaign id."""
    from verifarm.rollout.campaign import load_spec, submit
    from verifarm.rollout.config import FarmConfig
    from verifarm.rollout.embedded_redis import session_broker
    from verifarm.settings import load_settings

    try:
        spec = load_spec(spec_path)
    except ValueError as error:
        _fail(str(error))
    settings = load_settings()
    with session_broker(settings.redis_url, settings.home) as broker_url:
        try:
            row = submit(spec, FarmConfig.from_settings(settings, broker_url=broker_url), campaign_id)
        except (ValueError, ConnectionError, RuntimeError) as error:
            _fail(str(error))
    typer.echo(row.campaign_id)
    typer.echo(f"{spec.num_batches} batches queued: {spec.tasks} tasks x {spec.samples_per_task} samples", err=True)


def _status_line(st) -> str:
    rate = f"{st.rollouts_per_second:.1f}/s" if st.rollouts_per_second else "-"
    pass_rate = f"{st.pass_rate:.1%}" if st.pass_rate is not None else "-"
    return (f"{st.campaign_id}  {st.state:<9} {st.done}/{st.expected}  pass {pass_rate}  "
            f"infra errors {st.infra_errors} (retries {st.infra_retries})  {rate}")


@campaign_app.command("status")
def campaign_status(
    campaign_id: str,
    as_json: bool = typer.Option(False, "--json", help="machine-readable"),
) -> None:
    """Progress of one campaign, read from the store."""
    from verifarm.rollout.campaign import status

    try:
        st = status(campaign_id, _store_url())
    except ValueError as error:
        _fail(str(error))
    if as_json:
        typer.echo(json.dumps({**st.model_dump(mode="json"), "pass_rate": st.pass_rate}))
    else:
        typer.echo(_status_line(st))


@campaign_app.command("list")
def campaign_list() -> None:
    """Every campaign in the store with its progress."""
    from verifarm.rollout.campaign import list_campaigns

    rows = list_campaigns(_store_url())
    if not rows:
        typer.echo("no campaigns")
    for st in rows:
        typer.echo(_status_line(st))


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: str) -> None:
    """Stop a campaign: batches not started do nothing; records already collected stay."""
    from verifarm.rollout.campaign import cancel

    try:
        st = cancel(campaign_id, _store_url())
    except ValueError as error:
        _fail(str(error))
    typer.echo(_status_line(st))


@campaign_app.command("requeue")
def campaign_requeue(campaign_id: str) -> None:
    """Enqueue again the batches still missing records (after a broker lost its queue); safe to repeat."""
    from verifarm.rollout.campaign import requeue
    from verifarm.rollout.config import FarmConfig
    from verifarm.rollout.embedded_redis import session_broker
    from verifarm.settings import load_settings

    settings = load_settings()
    with session_broker(settings.redis_url, settings.home) as broker_url:
        try:
            n = requeue(campaign_id, FarmConfig.from_settings(settings, broker_url=broker_url))
        except ValueError as error:
            _fail(str(error))
    typer.echo(f"{n} batches queued again")


@campaign_app.command("watch")
def campaign_watch(
    campaign_id: str,
    interval: float = typer.Option(1.0, min=0.1, help="seconds between polls of the store"),
) -> None:
    """A live progress bar (done/total, pass rate, rollouts/s, ETA) until the campaign is done or cancelled."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from verifarm.rollout.campaign import status_from_store
    from verifarm.rollout.store import RolloutStore

    with RolloutStore(_store_url()) as store:
        try:
            st = status_from_store(store, campaign_id)
        except ValueError as error:
            _fail(str(error))
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("pass {task.fields[pass_rate]}"), TextColumn("{task.fields[rate]}"),
                   TextColumn("infra {task.fields[infra]}"), TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, transient=False) as progress:
            bar = progress.add_task(campaign_id, total=st.expected, pass_rate="-", rate="-", infra=0)
            while True:
                st = status_from_store(store, campaign_id)
                progress.update(
                    bar, completed=st.done,
                    pass_rate=f"{st.pass_rate:.1%}" if st.pass_rate is not None else "-",
                    rate=f"{st.rollouts_per_second:.1f} rollouts/s" if st.rollouts_per_second else "-",
                    infra=st.infra_errors,
                )
                if st.state != "running":
                    break
                time.sleep(interval)
    typer.echo(_status_line(st))


# ---- data ------------------------------------------------------------------------------------------------


def _filter(campaign: Optional[str], env: Optional[str], outcome: Optional[str], min_version: Optional[int],
            max_version: Optional[int], dedupe: bool, limit: Optional[int] = None):
    from verifarm.rollout.store import RecordFilter

    try:
        return RecordFilter(campaign_id=campaign, env_id=env, outcome=outcome,  # type: ignore[arg-type]
                            min_policy_version=min_version, max_policy_version=max_version, dedupe=dedupe,
                            limit=limit)
    except ValueError as error:
        _fail(str(error))


_CAMPAIGN = typer.Option(None, "--campaign", help="only this campaign")
_ENV = typer.Option(None, "--env", help="only this env id")
_OUTCOME = typer.Option(None, "--outcome", help="pass, fail or infra_error")
_MIN_V = typer.Option(None, "--min-version", help="lowest policy version")
_MAX_V = typer.Option(None, "--max-version", help="highest policy version")


@data_app.command("ls")
def data_ls(
    campaign: Optional[str] = _CAMPAIGN, env: Optional[str] = _ENV, outcome: Optional[str] = _OUTCOME,
    min_version: Optional[int] = _MIN_V, max_version: Optional[int] = _MAX_V,
    dedupe: bool = typer.Option(False, "--dedupe/--all", help="one record per distinct content"),
    limit: int = typer.Option(20, min=1, help="rows to list"),
) -> None:
    """List matching records, first stored first, with their total count."""
    from rich.console import Console
    from rich.table import Table

    from verifarm.rollout.store import RolloutStore

    flt = _filter(campaign, env, outcome, min_version, max_version, dedupe, limit)
    with RolloutStore(_store_url()) as store:
        total = store.count(flt)
        records = store.query(flt)
    table = Table()
    for column in ("record", "campaign", "env", "task", "sample", "outcome", "reward", "policy", "completion"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for r in records:
        table.add_row(r.record_id[:8], r.campaign_id, r.env_id.removeprefix("verifarm/"), str(r.task_index),
                      str(r.sample_index), r.outcome, f"{r.reward:.2f}",
                      "ref" if r.policy_version is None else f"v{r.policy_version}",
                      r.completion.replace("\n", " | ")[-48:])
    Console(width=160).print(table)
    typer.echo(f"{len(records)} of {total} records")


@data_app.command("show")
def data_show(record_id: str) -> None:
    """One record in full, as JSON (a unique prefix of the id is enough)."""
    from verifarm.rollout.store import RolloutStore

    with RolloutStore(_store_url()) as store:
        record = store.get_record(record_id) or store.get_record_by_prefix(record_id)
    if record is None:
        _fail(f"no record {record_id!r} (or the prefix is ambiguous)")
    typer.echo(json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False))


@data_app.command("export")
def data_export(
    out: Path = typer.Argument(..., help="output file, or a folder with --test-fraction"),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or parquet"),
    campaign: Optional[str] = _CAMPAIGN, env: Optional[str] = _ENV, outcome: Optional[str] = _OUTCOME,
    min_version: Optional[int] = _MIN_V, max_version: Optional[int] = _MAX_V,
    dedupe: bool = typer.Option(True, "--dedupe/--all", help="one record per distinct content"),
    test_fraction: Optional[float] = typer.Option(None, help="split by task into train/test files"),
) -> None:
    """Write a dataset that `datasets.load_dataset` reads."""
    from verifarm.rollout.export import export_records
    from verifarm.rollout.store import RolloutStore

    flt = _filter(campaign, env, outcome, min_version, max_version, dedupe)
    with RolloutStore(_store_url()) as store:
        try:
            result = export_records(store, flt, out, fmt, test_fraction)  # type: ignore[arg-type]
        except ValueError as error:
            _fail(str(error))
    for name, path in result.files.items():
        typer.echo(f"{path}: {result.rows[name]} rows")
    sys.stdout.flush()


@data_app.command("translations")
def data_translations(
    campaign: Optional[str] = _CAMPAIGN, outcome: Optional[str] = _OUTCOME,
    source_language: Optional[str] = typer.Option(None, "--source-language", help="e.g. python"),
    target_language: Optional[str] = typer.Option(None, "--target-language", help="e.g. rust"),
    limit: int = typer.Option(20, min=1, help="rows to list"),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="write the passing (source, translation) pairs "
                                         "as JSONL here instead of listing"),
) -> None:
    """Translation records (translate campaigns) with their lineage: source record, source and target language."""
    from itertools import islice

    from rich.console import Console
    from rich.table import Table

    from verifarm.rollout.store import RolloutStore
    from verifarm.rollout.translate import export_translation_pairs, translation_records
    from verifarm.sandbox.languages import get_language

    try:
        source_language = get_language(source_language).name if source_language else None
        target_language = get_language(target_language).name if target_language else None
    except ValueError as error:
        _fail(str(error))
    with RolloutStore(_store_url()) as store:
        if pairs is not None:
            flt = _filter(campaign, None, "pass", None, None, True)
            written = export_translation_pairs(store, pairs, flt, source_language, target_language)
            typer.echo(f"{pairs}: {written} translation pairs")
            return
        flt = _filter(campaign, None, outcome, None, None, False)
        records = list(islice(translation_records(store, flt, source_language, target_language), limit))
    table = Table()
    for column in ("record", "campaign", "problem", "from", "to", "source record", "outcome", "compared", "reason"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for r in records:
        lineage = r.details["lineage"]
        table.add_row(r.record_id[:8], r.campaign_id, str(lineage.get("problem")), str(lineage.get("source_language")),
                      str(lineage.get("target_language")), str(lineage.get("source_record_id"))[:8], r.outcome,
                      str(r.details.get("differential_compared", "-")), r.reason[:48])
    Console(width=160).print(table)
    typer.echo(f"{len(records)} translation records")
