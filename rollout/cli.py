"""Command-line commands of verifarm.rollout (the worker's torch-loading app is imported only by `workers start`).

With no VERIFARM_REDIS_URL, commands that need a broker start a private Redis under VERIFARM_HOME for the
session (or use the one `workers start` keeps running). Progress, status and data need only the store.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import NoReturn

import typer

from verifarm.cli_errors import BadInput, Failure
from verifarm.envs.cli import complete_env_ids
from verifarm.redaction import redact_url
from verifarm.rollout.broker import sender_app
from verifarm.rollout.campaign import (
    CampaignFinished,
    cancel,
    list_campaigns,
    load_spec,
    status,
    status_from_store,
)
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import session_broker
from verifarm.rollout.export import export_records
from verifarm.rollout.reverify import format_reverify, reverify
from verifarm.rollout.services import ServiceUnavailable, check_broker, check_registry, check_store
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.submission import requeue, submit
from verifarm.rollout.translate import export_translation_pairs, translation_records
from verifarm.sandbox.languages import get_language
from verifarm.settings import Settings, load_settings
from verifarm.terminal import ProgressReporter, inert

workers_app = typer.Typer(no_args_is_help=True, help="the rollout worker pool")
campaign_app = typer.Typer(no_args_is_help=True, help="rollout campaigns")
data_app = typer.Typer(no_args_is_help=True, help="the collected datasets")


def _fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2 (the root command prints it)."""
    raise BadInput(message)


def _failed(message: str) -> NoReturn:
    """A runtime failure (a service down, a state that forbids the request): one line on stderr, exit 1."""
    raise Failure(message)


def _store_url(settings: Settings) -> str:
    """Commands that only read or flag the store need no broker. Before anything is stored in this home's default
    SQLite file they refuse rather than create an empty store: the default home is relative to the working folder,
    so this is most often a command run from another folder than the farm's."""
    url = settings.existing_store_url()
    if url is None:
        _failed(
            f"nothing is stored in {settings.default_store_file} yet: submit a campaign first, or point "
            "VERIFARM_HOME (or VERIFARM_DATABASE_URL) at the farm's store"
        )
    return url


def _check_services(settings: Settings, broker_url: str | None) -> None:
    """Refuse to start, in one line, when the store or the broker (None: not yet) cannot be used."""
    try:
        if broker_url is None:
            if not settings.database_url:
                settings.home.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives there
            check_store(settings.store_url)
        else:
            check_broker(broker_url)
    except ServiceUnavailable as error:
        _failed(str(error))


def _check_registry(url: str, cache_dir: Path) -> None:
    """Refuse to start, in one line, when the trainer's registry server (VERIFARM_REGISTRY_URL) does not answer."""
    try:
        check_registry(url, cache_dir)
    except ServiceUnavailable as error:
        _failed(str(error))


def complete_campaign_ids(incomplete: str) -> list[str]:
    """Shell completion of the campaign ids in the store (none, rather than a new database, if it is absent)."""
    try:
        url = load_settings().existing_store_url()
        if url is None:
            return []
        with RolloutStore(url) as store:
            return [row.campaign_id for row in store.list_campaigns() if row.campaign_id.startswith(incomplete)]
    except Exception:  # a completion must never print a traceback into the user's shell
        return []


_CAMPAIGN_ID = typer.Argument(..., help="campaign id (`verifarm campaign list`)", autocompletion=complete_campaign_ids)


# ---- workers ---------------------------------------------------------------------------------------------


@workers_app.command("start")
def workers_start(
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", min=1, help="pool processes (default: one per CPU core)"
    ),
    name: str = typer.Option("verifarm@%h", "--name", "-n", help="worker node name (%h: host name)"),
    loglevel: str = typer.Option("INFO", "--loglevel", "-l"),
) -> None:
    """Start a pool of rollout workers (blocks; Ctrl-C stops it, and the private Redis if it started one)."""
    settings = load_settings()
    _check_services(settings, None)  # the store first: no private Redis is started only to refuse
    if settings.registry_url:
        _check_registry(settings.registry_url, settings.checkpoints)
    with session_broker(settings.redis_url, settings.home) as broker_url:
        _check_services(settings, broker_url)
        farm = FarmConfig.from_settings(settings, broker_url=broker_url)
        # A refused start never waits for the worker's torch and transformers (seconds).
        # deferred: the worker's app loads torch and transformers, which no other command needs
        from verifarm.rollout.app import run_worker

        typer.echo(
            f"broker {redact_url(broker_url)}  store {redact_url(farm.store_url)}  checkpoints {farm.checkpoint_dir}",
            err=True,
        )
        run_worker(farm, concurrency or os.cpu_count() or 1, name, loglevel)


@workers_app.command("ls")
def workers_ls(
    timeout: float = typer.Option(2.0, min=0.1, help="seconds to wait for answers"),
    as_json: bool = typer.Option(False, "--json", help="one JSON array of the rows below"),
) -> None:
    """List the workers that answer a ping and what they are running.

    `--json` fields per worker: worker (node name), running (list of {campaign_id, batch_index}).
    """
    try:
        farm = FarmConfig.from_settings(load_settings())
    except ValueError as error:
        _failed(str(error))
    try:
        check_broker(farm.broker_url)
    except ServiceUnavailable as error:
        _failed(str(error))
    inspector = sender_app(farm).control.inspect(timeout=timeout)
    active = inspector.active() or {}
    rows = []
    for worker, tasks in sorted(active.items()):
        running = []
        for task in tasks:
            args = list(task.get("args") or [])
            running.append(
                {"campaign_id": args[0] if args else None, "batch_index": args[1] if len(args) > 1 else None}
            )
        rows.append({"worker": worker, "running": running})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no workers answered")
    for row in rows:
        activity = ", ".join(f"{r['campaign_id']} batch {r['batch_index']}" for r in row["running"]) or "idle"
        typer.echo(f"{row['worker']}: {activity}")


# ---- campaigns -------------------------------------------------------------------------------------------


@campaign_app.command("submit")
def campaign_submit(
    spec_path: Path = typer.Argument(..., help="campaign spec, .yaml or .json"),
    campaign_id: str | None = typer.Option(None, "--id", help="campaign id (default: name + random suffix)"),
) -> None:
    """Validate a spec, store the campaign and enqueue its batches. Prints the campaign id."""
    try:
        spec = load_spec(spec_path)
    except ValueError as error:
        _fail(str(error))
    settings = load_settings()
    _check_services(settings, None)  # the store first: no private Redis is started only to refuse
    with session_broker(settings.redis_url, settings.home) as broker_url:
        _check_services(settings, broker_url)
        try:
            row = submit(spec, FarmConfig.from_settings(settings, broker_url=broker_url), campaign_id)
        except ValueError as error:
            _fail(str(error))
        except (ConnectionError, RuntimeError) as error:
            _failed(str(error))
    typer.echo(row.campaign_id)
    typer.echo(f"{spec.num_batches} batches queued: {spec.tasks} tasks x {spec.samples_per_task} samples", err=True)


def _status_json(st) -> dict:
    """One campaign for `--json`: campaign_id, name, state (running|done|cancelled), expected, done, passed,
    failed, infra_errors, infra_retries, rollouts_per_second (over the campaign's wall time, or null), created_at
    (ISO 8601), pass_rate (passed / scored, or null)."""
    return {**st.model_dump(mode="json"), "pass_rate": st.pass_rate}


def _status_line(st) -> str:
    rate = f"{st.rollouts_per_second:.1f}/s" if st.rollouts_per_second else "-"
    pass_rate = f"{st.pass_rate:.1%}" if st.pass_rate is not None else "-"
    return (
        f"{st.campaign_id}  {st.state:<9} {st.done}/{st.expected}  pass {pass_rate}  "
        f"infra errors {st.infra_errors} (retries {st.infra_retries})  {rate}"
    )


@campaign_app.command("status")
def campaign_status(
    campaign_id: str = _CAMPAIGN_ID,
    as_json: bool = typer.Option(False, "--json", help="one JSON object (fields: see `campaign list --help`)"),
) -> None:
    """Progress of one campaign, read from the store."""
    try:
        st = status(campaign_id, _store_url(load_settings()))
    except ValueError as error:
        _fail(str(error))
    if as_json:
        typer.echo(json.dumps(_status_json(st)))
    else:
        typer.echo(_status_line(st))


@campaign_app.command("list")
def campaign_list(as_json: bool = typer.Option(False, "--json", help="one JSON array of the rows below")) -> None:
    """Every campaign in the store with its progress.

    `--json` fields per campaign: campaign_id, name, state (running|done|cancelled), expected, done, passed,
    failed, infra_errors, infra_retries, rollouts_per_second (over the campaign's wall time, or null),
    created_at (ISO 8601), pass_rate (passed / scored, or null).
    """
    rows = list_campaigns(_store_url(load_settings()))
    if as_json:
        typer.echo(json.dumps([_status_json(st) for st in rows]))
        return
    if not rows:
        typer.echo("no campaigns")
    for st in rows:
        typer.echo(_status_line(st))


@campaign_app.command("cancel")
def campaign_cancel(campaign_id: str = _CAMPAIGN_ID) -> None:
    """Stop a running campaign: batches not started do nothing; records already collected stay."""
    try:
        st = cancel(campaign_id, _store_url(load_settings()))
    except CampaignFinished as error:
        _failed(str(error))
    except ValueError as error:
        _fail(str(error))
    typer.echo(_status_line(st))


@campaign_app.command("requeue")
def campaign_requeue(campaign_id: str = _CAMPAIGN_ID) -> None:
    """Enqueue again the batches still missing records (after a broker lost its queue); safe to repeat."""
    settings = load_settings()
    _check_services(settings, None)  # the store first: no private Redis is started only to refuse
    with session_broker(settings.redis_url, settings.home) as broker_url:
        _check_services(settings, broker_url)
        try:
            n = requeue(campaign_id, FarmConfig.from_settings(settings, broker_url=broker_url))
        except ValueError as error:
            _fail(str(error))
    typer.echo(f"{n} batches queued again")


@campaign_app.command("watch")
def campaign_watch(
    campaign_id: str = _CAMPAIGN_ID,
    interval: float = typer.Option(1.0, min=0.1, help="seconds between polls of the store"),
) -> None:
    """Live progress (done/total, pass rate, rollouts/s over the campaign's wall time, ETA) until the campaign is
    done or cancelled: a bar on a terminal, a plain line every few seconds otherwise."""
    with RolloutStore(_store_url(load_settings())) as store:
        try:
            st = status_from_store(store, campaign_id)
        except ValueError as error:
            _fail(str(error))
        with ProgressReporter(
            campaign_id, total=st.expected, fields=("pass", "rate", "infra"), eta=True, stream=sys.stdout
        ) as progress:
            while True:
                st = status_from_store(store, campaign_id)
                progress.update(
                    st.done,
                    infra=st.infra_errors,
                    **{
                        "pass": f"{st.pass_rate:.1%}" if st.pass_rate is not None else "-",
                        "rate": f"{st.rollouts_per_second:.1f} rollouts/s" if st.rollouts_per_second else "-",
                    },
                )
                if st.state != "running":
                    break
                time.sleep(interval)
    typer.echo(_status_line(st))


# ---- data ------------------------------------------------------------------------------------------------


def _filter(
    campaign: str | None,
    env: str | None,
    outcome: str | None,
    min_version: int | None,
    max_version: int | None,
    dedupe: bool,
    limit: int | None = None,
):
    try:
        return RecordFilter(
            campaign_id=campaign,
            env_id=env,
            outcome=outcome,  # type: ignore[arg-type]
            min_policy_version=min_version,
            max_policy_version=max_version,
            dedupe=dedupe,
            limit=limit,
        )
    except ValueError as error:
        _fail(str(error))


_CAMPAIGN = typer.Option(None, "--campaign", help="only this campaign", autocompletion=complete_campaign_ids)
_ENV = typer.Option(None, "--env", help="only this env id", autocompletion=complete_env_ids)
_OUTCOME = typer.Option(None, "--outcome", help="pass, fail or infra_error")
_MIN_V = typer.Option(None, "--min-version", help="lowest policy version")
_MAX_V = typer.Option(None, "--max-version", help="highest policy version")
_VERIFIER_V = typer.Option(None, "--verifier-version", help="only records scored by this verifier version")


# `data ls` counts matches up to this many: past it the count would cost a read of the whole selection.
COUNT_LIMIT = 10_000


def _duplicates(store, flt) -> int:
    """How many matching records repeat the content of an earlier one (what `--dedupe` leaves out)."""
    from dataclasses import replace

    return store.count(replace(flt, dedupe=False, limit=None)) - store.count(replace(flt, dedupe=True, limit=None))


def _completion_cell(completion: str, width: int = 48) -> str:
    """The end of a completion on one line, every control character or invalid byte shown escaped."""

    return inert(completion.replace("\n", " | "))[-width:]


@data_app.command("ls")
def data_ls(
    campaign: str | None = _CAMPAIGN,
    env: str | None = _ENV,
    outcome: str | None = _OUTCOME,
    min_version: int | None = _MIN_V,
    max_version: int | None = _MAX_V,
    dedupe: bool = typer.Option(True, "--dedupe/--all", help="one record per distinct content, as `data export`"),
    limit: int = typer.Option(20, min=1, help="rows to list"),
    verifier_version: str | None = _VERIFIER_V,
    as_json: bool = typer.Option(False, "--json", help="one JSON object: the rows and the counts"),
    count_all: bool = typer.Option(
        False, "--count-all", help=f"count every match exactly, past {COUNT_LIMIT:,} (reads the whole selection)"
    ),
) -> None:
    """List matching records, first stored first, with their total count (deduplicated by default, like `export`).

    Counting stops past 10,000 matches (the listing then says "more than 10,000"), so that listing costs the same
    in a store of any size; `--count-all` counts them all, and their duplicates.

    `--json` prints {"records": [...], "total": N, "duplicates": D, "deduplicated": bool, "exact": bool}: each
    record has the fields of `data show` (record_id, campaign_id, env_id, task_index, sample_index, prompt,
    completion, reward, passed, outcome, policy_version, ...); total counts matching records under the same
    deduplication; duplicates counts those that repeat an earlier record's content. When `exact` is false (more
    than 10,000 matches, without --count-all), total and duplicates are null.
    """
    import dataclasses

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    flt = dataclasses.replace(
        _filter(campaign, env, outcome, min_version, max_version, dedupe, limit), verifier_version=verifier_version
    )
    with RolloutStore(_store_url(load_settings())) as store:
        everything = store.count(
            dataclasses.replace(flt, dedupe=False, limit=None), at_most=None if count_all else COUNT_LIMIT
        )
        # Deduplicating is counted only over a selection already known to be small (or when asked to).
        distinct = (
            store.count(dataclasses.replace(flt, dedupe=True, limit=None))
            if count_all or everything <= COUNT_LIMIT
            else None
        )
        records = store.query(flt)
    exact = distinct is not None
    total = (distinct if dedupe else everything) if distinct is not None else None
    duplicates = everything - distinct if distinct is not None else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "records": [r.model_dump(mode="json") for r in records],
                    "total": total,
                    "duplicates": duplicates,
                    "deduplicated": dedupe,
                    "exact": exact,
                }
            )
        )
        return
    table = Table()
    for column in ("record", "campaign", "env", "task", "sample", "outcome", "reward", "policy", "completion"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for r in records:
        # Text cells: a completion holding "[bold]" is shown as written, never read as markup.
        cells = (
            r.record_id[:8],
            r.campaign_id,
            r.env_id.removeprefix("verifarm/"),
            str(r.task_index),
            str(r.sample_index),
            r.outcome,
            f"{r.reward:.2f}",
            "ref" if r.policy_version is None else f"v{r.policy_version}",
            _completion_cell(r.completion),
        )
        table.add_row(*(Text(cell) for cell in cells))
    Console(width=160).print(table)
    if not exact:
        typer.echo(
            f"{len(records)} of more than {COUNT_LIMIT:,} matching records, duplicates included "
            "(--count-all counts them exactly)"
        )
    elif dedupe:
        typer.echo(
            f"{len(records)} of {total} records ({duplicates} duplicates not counted, as in `data export`; "
            "--all lists them)"
        )
    else:
        typer.echo(
            f"{len(records)} of {total} records, {duplicates} of them duplicates (`data export` leaves "
            "those out unless --all)"
        )


@data_app.command("show")
def data_show(record_id: str) -> None:
    """One record in full, as JSON (a unique prefix of the id is enough); control characters shown escaped."""

    with RolloutStore(_store_url(load_settings())) as store:
        record = store.get_record(record_id) or store.get_record_by_prefix(record_id)
    if record is None:
        _fail(f"no record {record_id!r} (or the prefix is ambiguous): `verifarm data ls` lists record ids")
    # json.dumps escapes C0 controls; inert() escapes the rest (DEL, C1, bidi overrides, invalid bytes), and the
    # result is still valid JSON since every escape it writes is a JSON escape too.
    text = json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False)
    typer.echo(inert(text, keep_newlines=True, json_style=True))


@data_app.command("export")
def data_export(
    out: Path = typer.Argument(..., help="output file, or a folder with --test-fraction"),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl or parquet"),
    campaign: str | None = _CAMPAIGN,
    env: str | None = _ENV,
    outcome: str | None = _OUTCOME,
    min_version: int | None = _MIN_V,
    max_version: int | None = _MAX_V,
    dedupe: bool = typer.Option(True, "--dedupe/--all", help="one record per distinct content"),
    test_fraction: float | None = typer.Option(None, help="split by task into train/test files"),
    parents: bool = typer.Option(False, "--parents", "-p", help="create the output's missing parent folders"),
) -> None:
    """Write a dataset that `datasets.load_dataset` reads; refuses to write an empty one."""

    if fmt not in ("jsonl", "parquet"):
        _fail(f"export format must be 'jsonl' or 'parquet', got {fmt!r}")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        _fail(f"--test-fraction must lie strictly between 0 and 1, got {test_fraction}")
    folder = out.parent if test_fraction is None else out
    if out.is_dir() and test_fraction is None:
        _fail(f"{out} is a folder: name the output file (e.g. {out / ('records.' + fmt)})")
    if not parents and not out.parent.is_dir():
        _fail(f"folder {out.parent} does not exist: create it, or pass --parents")
    flt = _filter(campaign, env, outcome, min_version, max_version, dedupe)
    with RolloutStore(_store_url(load_settings())) as store:
        matching = store.count(flt)
        duplicates = _duplicates(store, flt)
        if matching == 0:
            _failed(
                "no records match these filters, so nothing was written (an empty file is no dataset): "
                "check them with `verifarm data ls`"
            )
        created = not folder.exists()
        try:
            result = export_records(store, flt, out, fmt, test_fraction)  # type: ignore[arg-type]
        except OSError as error:
            _failed(
                f"cannot write {error.filename or out} ({error.strerror or error}): choose a location you may write to"
            )
    empty = [name for name, rows in result.rows.items() if rows == 0]
    if empty:
        # A split with no rows is a file no data loader reads: take the export back rather than leave it half-done.
        for path in result.files.values():
            path.unlink(missing_ok=True)
        if created:
            folder.rmdir()
        _failed(
            f"the {' and '.join(empty)} split would be empty ({matching} records over too few tasks), so "
            "nothing was written: change --test-fraction or export more records"
        )
    for name, path in result.files.items():
        typer.echo(f"{path}: {result.rows[name]} rows")
    if dedupe and duplicates:
        typer.echo(f"{duplicates} duplicate records left out (--all keeps them), as `data ls` counts them", err=True)
    sys.stdout.flush()


@data_app.command("reverify")
def data_reverify(
    campaign: str | None = _CAMPAIGN,
    env: str | None = _ENV,
    verifier_version: str | None = _VERIFIER_V,
    limit: int | None = typer.Option(None, min=1, help="re-score at most this many records"),
    as_json: bool = typer.Option(False, "--json", help="the report as JSON"),
) -> None:
    """Re-score stored records with the current verifiers and report the verdicts that flip (the store is not
    changed)."""
    import dataclasses

    flt = dataclasses.replace(_filter(campaign, env, None, None, None, False, limit), verifier_version=verifier_version)
    settings = load_settings()
    with RolloutStore(_store_url(settings)) as store:
        report = reverify(store, flt, settings.sandbox_backend)
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else format_reverify(report))


@data_app.command("translations")
def data_translations(
    campaign: str | None = _CAMPAIGN,
    outcome: str | None = _OUTCOME,
    source_language: str | None = typer.Option(None, "--source-language", help="e.g. python"),
    target_language: str | None = typer.Option(None, "--target-language", help="e.g. rust"),
    limit: int = typer.Option(20, min=1, help="rows to list"),
    pairs: Path | None = typer.Option(
        None, "--pairs", help="write the passing (source, translation) pairs as JSONL here instead of listing"
    ),
) -> None:
    """Translation records (translate campaigns) with their lineage: source record, source and target language."""
    from itertools import islice

    from rich.console import Console
    from rich.table import Table

    try:
        source_language = get_language(source_language).name if source_language else None
        target_language = get_language(target_language).name if target_language else None
    except ValueError as error:
        _fail(str(error))
    with RolloutStore(_store_url(load_settings())) as store:
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
        table.add_row(
            r.record_id[:8],
            r.campaign_id,
            str(lineage.get("problem")),
            str(lineage.get("source_language")),
            str(lineage.get("target_language")),
            str(lineage.get("source_record_id"))[:8],
            r.outcome,
            str(r.details.get("differential_compared", "-")),
            r.reason[:48],
        )
    Console(width=160).print(table)
    typer.echo(f"{len(records)} translation records")
