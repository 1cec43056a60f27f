"""Campaign pages: the list with live progress (and cancel), and one campaign's breakdowns."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from verifarm.dashboard import breakdowns, deps
from verifarm.dashboard.charts import Series, bar_chart, line_chart
from verifarm.dashboard.config import DashboardConfig
from verifarm.rollout.campaign import CampaignStatus, cancel, status_from_store
from verifarm.rollout.store import RolloutStore

router = APIRouter()

CANCEL_HEADER = "x-verifarm-action"  # a custom header: a cross-site form cannot send it without CORS approval


def progress(st: CampaignStatus) -> dict[str, Any]:
    eta = breakdowns.eta_seconds(st.done, st.expected, st.rollouts_per_second, st.state == "running")
    return {
        **st.model_dump(mode="json"),
        "pass_rate": st.pass_rate,
        "fraction_done": st.fraction_done,
        "eta_seconds": eta,
    }


def all_progress(store: RolloutStore) -> list[dict[str, Any]]:
    rows = [progress(status_from_store(store, row.campaign_id)) for row in store.list_campaigns()]
    return sorted(rows, key=lambda row: row["created_at"], reverse=True)  # newest first


@router.get("/")
def campaigns_page(request: Request, store: RolloutStore = Depends(deps.store)):
    return deps.render(request, "campaigns.html", campaigns=all_progress(store))


@router.get("/api/campaigns")
def campaigns_json(store: RolloutStore = Depends(deps.store)) -> JSONResponse:
    return JSONResponse(all_progress(store))


@router.get("/campaigns/{campaign_id}")
def campaign_page(campaign_id: str, request: Request, store: RolloutStore = Depends(deps.store)):
    row = store.get_campaign(campaign_id)
    if row is None:
        raise HTTPException(404, f"no campaign {campaign_id!r}")
    st = progress(status_from_store(store, campaign_id))
    table = breakdowns.by_env_and_difficulty(store, campaign_id)
    bars = [(f"{r.env_id.removeprefix('verifarm/')} d{r.difficulty}", r.pass_rate or 0.0) for r in table]
    rate = breakdowns.throughput(store, campaign_id)
    outcome_bars = [("pass", st["passed"]), ("fail", st["failed"]), ("infra error", st["infra_errors"])]
    return deps.render(
        request,
        "campaign.html",
        campaign=row,
        status=st,
        table=table,
        reasons=breakdowns.failure_reasons(store, campaign_id),
        pass_chart=bar_chart(bars, "pass rate by env and difficulty", "pass rate", y_max=1.0),
        outcome_chart=bar_chart(outcome_bars, "records by outcome", "records"),
        throughput_chart=line_chart(
            [Series("records/s", rate)], "throughput over time", "minutes since first record", "records/s"
        ),
    )


@router.post("/campaigns/{campaign_id}/cancel")
def cancel_campaign(campaign_id: str, request: Request, config: DashboardConfig = Depends(deps.config)) -> JSONResponse:
    """The dashboard's only write. Asked for by the page's script, which sends the custom header."""
    if request.headers.get(CANCEL_HEADER) != "cancel":
        raise HTTPException(403, f"cancel needs the {CANCEL_HEADER}: cancel header (sent by the dashboard page)")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise HTTPException(403, "cancel from another origin refused")
    try:
        return JSONResponse(progress(cancel(campaign_id, config.store_url)))
    except ValueError as error:  # no such campaign
        raise HTTPException(404, str(error)) from None
