"""Re-enqueue the batches a broker lost, so a campaign finishes without an operator.

Kombu's Redis transport takes a message off the queue (BRPOP) and records it as unacknowledged in a second round
trip; a broker that dies between the two has lost the message for good (celery/kombu#305), and a Redis without
persistence loses every queued batch when it restarts. Late acks and the visibility timeout cannot bring such a
batch back, so workers sweep: when the broker holds no batch at all, neither queued nor unacknowledged, no batch is
in flight anywhere, and any running campaign that still misses records has lost some. Its missing batches are
enqueued again (`requeue`); batches are idempotent, so a sweep that races a delivery costs a skip, never a
duplicate record. A batch that keeps failing is not looped on: each campaign is swept a bounded number of times.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from verifarm.rollout.campaign import status_from_store
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.running_campaigns import RunningCampaigns
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.submission import requeue

log = logging.getLogger(__name__)

# Kombu's Redis transport keeps unacknowledged deliveries in this hash (its default `unacked_key`).
UNACKED_KEY = "unacked"
SWEEPS_PER_CAMPAIGN = 3
SWEEP_LOCK = "verifarm:reconcile:lock"
_SWEEP_COUNT = "verifarm:reconcile:sweeps:{}"


def batches_in_broker(client: redis.Redis, queue_keys: list[str]) -> int:
    """Batch messages the broker holds: queued on any of the queue's lists, or delivered and not yet acknowledged."""
    queued = sum(client.llen(key) for key in queue_keys)
    return queued + client.hlen(UNACKED_KEY)


def lost_campaigns(store: RolloutStore, older_than: datetime) -> list[str]:
    """Running campaigns created before `older_than` (so still short of complete).

    Only campaigns not yet known to be done are counted (`RunningCampaigns`); one found done now is remembered,
    so a store full of finished campaigns costs the sweep nothing.
    """
    index = RunningCampaigns(store.engine, store.campaigns)
    running = []
    # A campaign just submitted may not have enqueued its batches yet: only older ones are candidates.
    for campaign_id in index.candidates(older_than):
        current = status_from_store(store, campaign_id)
        if current.state == "running":
            running.append(campaign_id)
        elif current.state == "done":
            index.mark_done(campaign_id)
    return running


def sweep(farm: FarmConfig, queue_keys: list[str], now: datetime | None = None) -> dict[str, int]:
    """One reconciliation pass; returns {campaign id: batches enqueued again}. Safe from many workers at once."""
    client = redis.Redis.from_url(farm.broker_url, socket_timeout=10)
    try:
        # One sweeper per interval across the farm; the lock expires by itself if its holder dies.
        if not client.set(SWEEP_LOCK, "1", nx=True, ex=farm.tuning.reconcile_interval_s):
            return {}
        if batches_in_broker(client, queue_keys):
            return {}
        now = now or datetime.now(timezone.utc)
        with RolloutStore(farm.store_url) as store:
            candidates = lost_campaigns(store, now - timedelta(seconds=farm.tuning.visibility_timeout_s))
        requeued: dict[str, int] = {}
        for campaign_id in candidates:
            sweeps = client.incr(_SWEEP_COUNT.format(campaign_id))
            if sweeps > SWEEPS_PER_CAMPAIGN:
                if sweeps == SWEEPS_PER_CAMPAIGN + 1:
                    log.warning(
                        "campaign %s still misses records after %d sweeps; its failing batches are left "
                        "for `verifarm campaign requeue`",
                        campaign_id,
                        SWEEPS_PER_CAMPAIGN,
                    )
                continue
            requeued[campaign_id] = requeue(campaign_id, farm)
            log.warning(
                "campaign %s: the broker had lost %d batch(es); enqueued them again", campaign_id, requeued[campaign_id]
            )
        return requeued
    finally:
        client.close()


def start_sweeping(worker: Any, farm: FarmConfig, queue_keys: list[str]) -> Any:
    """Run `sweep` every `farm.tuning.reconcile_interval_s` on the worker's timer; returns the timer entry."""

    def tick() -> None:
        try:
            sweep(farm, queue_keys)
        except Exception as error:  # a broker or database blip: the next tick tries again
            log.warning("batch reconciliation skipped: %s", error)

    return worker.timer.call_repeatedly(farm.tuning.reconcile_interval_s, tick, priority=10)
