"""The workers page: who answers on the broker, what they run, how deep the queue is, and Flower if it runs."""

from __future__ import annotations

import urllib.request
from typing import Any

import redis
from fastapi import APIRouter, Depends, Request

from verifarm.dashboard import deps
from verifarm.dashboard.config import DashboardConfig
from verifarm.rollout.broker import queue_keys, sender_app
from verifarm.rollout.config import FarmConfig

router = APIRouter()


def farm_view(config: DashboardConfig, timeout: float = 1.0) -> dict[str, Any]:
    """Workers (Celery's inspect: active batches, pool size) and queue depth; errors become a message."""
    broker_url = config.broker_url
    if not broker_url:
        return {"error": "no broker configured (VERIFARM_REDIS_URL unset and no private Redis running)"}
    view: dict[str, Any] = {"workers": [], "queues": []}
    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=timeout)
        try:
            view["queues"] = [(key, client.llen(key)) for key in queue_keys()]
        finally:
            client.close()
        farm = FarmConfig(broker_url=broker_url, store_url=config.store_url, checkpoint_dir=config.checkpoint_dir)
        inspector = sender_app(farm).control.inspect(timeout=timeout)
        active = inspector.active() or {}
        stats = inspector.stats() or {}
    except Exception as error:
        return {**view, "error": f"broker unreachable: {type(error).__name__}"}
    for name in sorted(set(active) | set(stats)):
        pool = (stats.get(name) or {}).get("pool") or {}
        view["workers"].append(
            {
                "name": name,
                "concurrency": pool.get("max-concurrency"),
                "batches": [task.get("args") for task in active.get(name, [])],
            }
        )
    return view


def flower_is_up(url: str | None) -> bool:
    if not url:
        return False
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except Exception:
        return False


@router.get("/workers")
def workers_page(request: Request, config: DashboardConfig = Depends(deps.config)):
    view = farm_view(config)
    return deps.render(
        request,
        "workers.html",
        view=view,
        flower=flower_is_up(config.flower_url),
        queued=sum(depth for _, depth in view.get("queues", [])),
    )
