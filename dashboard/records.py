"""The dataset browser (filters, keyset pages newest first) and one rollout's page and download."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse

from verifarm.dashboard import deps
from verifarm.dashboard.config import DashboardConfig
from verifarm.dashboard.record_rows import menu_options, records_content
from verifarm.envs.catalog import ENV_IDS
from verifarm.rollout.store import OUTCOMES, RecordFilter, RolloutStore, record_id_for

router = APIRouter()

ENV_CHOICES = tuple(sorted(ENV_IDS))
POLICY_NAMES = ("checkpoint", "reference", "endpoint")
TOKENS_SHOWN = 512  # of a record's token log-probs on its page


def _blank_to_none(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


LISTING_PATH = "/records"  # served ahead of FastAPI's stack by `app.ListingFirst`
FILTER_PARAMS = ("campaign", "env", "outcome", "policy_version", "verifier_version", "policy_name")


def page_cursor(value: str | None) -> int | None:
    """The `before` cursor of an older page: a seq (a whole number from 1), or None for the newest page."""
    value = _blank_to_none(value)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise HTTPException(400, f"before must be a record's seq (a whole number from 1), got {value!r}")
    return int(value)


def record_filter(
    campaign: str | None,
    env: str | None,
    outcome: str | None,
    policy_version: str | None,
    verifier_version: str | None,
    policy_name: str | None,
) -> RecordFilter:
    """The browser's query string as a store filter; a bad value is a 400 with the store's own message."""
    version = _blank_to_none(policy_version)
    if version is not None and not version.isdigit():
        raise HTTPException(400, f"policy version must be a whole number, got {version!r}")
    outcome = _blank_to_none(outcome)
    try:
        return RecordFilter(
            campaign_id=_blank_to_none(campaign),
            env_id=_blank_to_none(env),
            outcome=outcome,  # type: ignore[arg-type]
            min_policy_version=int(version) if version else None,
            max_policy_version=int(version) if version else None,
            verifier_version=_blank_to_none(verifier_version),
            policy_name=_blank_to_none(policy_name),
        )
    except ValueError as error:
        raise HTTPException(400, str(error)) from None


# Served on the event loop: a hop to a worker thread and back cost more than the page's own query (see the
# Dashboard latency section of benchmarks/README.md). That is safe because the walk is bounded: a filter that
# matches almost nothing examines at most `scan_window` records per page (a few milliseconds) and the page says
# how far it searched, instead of scanning a million records while every other page waits.
# A plain Starlette route (registered below), not a FastAPI endpoint: the page reads its query string itself, so
# FastAPI's parameter validation, dependency solving and response handling would only add to every page.
async def records_page(request: Request) -> HTMLResponse:
    query = request.query_params
    filters: dict[str, Any] = {name: query.get(name) for name in FILTER_PARAMS}
    before = page_cursor(query.get("before"))
    state = request.app.state
    config: DashboardConfig = state.config
    store: RolloutStore = state.store
    flt = record_filter(*filters.values())
    # One more than a page tells whether an older page exists, without counting the matches; one character
    # more than a preview tells whether the text went on (the listing marks it cut).
    window = store.newest_window(
        flt,
        before_seq=before,
        limit=config.page_size + 1,
        preview_chars=config.preview_chars + 1,
        window=config.scan_window,
    )
    page, more = window.records[: config.page_size], len(window.records) > config.page_size
    menus = {
        "campaign": menu_options(tuple(store.campaign_ids()), filters["campaign"]),
        "env": menu_options(ENV_CHOICES, filters["env"]),
        "outcome": menu_options(OUTCOMES, filters["outcome"]),
        "policy_name": menu_options(POLICY_NAMES, filters["policy_name"]),
    }
    content = records_content(
        page,
        config.preview_chars,
        filters,
        menus,
        before=before,
        older=page[-1].seq if more else window.searched_to,
        searched_to=window.searched_to,
    )
    head, tail = deps.frame(request, "Dataset")
    return HTMLResponse(head + content + tail)


router.add_route(LISTING_PATH, records_page, methods=["GET"])


def _record_or_404(store: RolloutStore, record_id: str):
    record = store.get_record(record_id)
    if record is None:
        raise HTTPException(404, f"no record {record_id!r}")
    return record


@router.get("/records/{record_id}")
def record_page(record_id: str, request: Request, store: RolloutStore = Depends(deps.store)):
    record = _record_or_404(store, record_id)
    # The other samples of the same task (its group), by their deterministic ids.
    siblings = [
        (index, record_id_for(record.campaign_id, record.task_index, index)) for index in range(record.group_size)
    ]
    logprobs = record.logprobs or []
    details_json = json.dumps(record.details, indent=2, ensure_ascii=False, default=str)
    return deps.render(
        request,
        "record.html",
        record=record,
        siblings=siblings,
        details_json=details_json,
        tokens=list(zip(record.token_ids or [], logprobs))[:TOKENS_SHOWN],
        logprob_sum=sum(logprobs) if logprobs else None,
        tokens_shown=TOKENS_SHOWN,
    )


@router.get("/records/{record_id}/{part}.txt")
def record_text(record_id: str, part: str, store: RolloutStore = Depends(deps.store)) -> PlainTextResponse:
    """The whole prompt or completion as a text/plain download (never rendered as a page)."""
    if part not in ("prompt", "completion"):
        raise HTTPException(404, "download prompt.txt or completion.txt")
    record = _record_or_404(store, record_id)
    return PlainTextResponse(
        getattr(record, part), headers={"Content-Disposition": f'attachment; filename="{record_id}-{part}.txt"'}
    )
