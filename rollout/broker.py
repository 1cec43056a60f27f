"""The farm's side of the broker: queue names, the Celery configuration a farm's processes share, and enqueueing.

Everything that sends batches (submit, requeue, the reconciler) or pings workers needs only this; the worker's task
and bootsteps live in `verifarm.rollout.app`. Tasks are sent by name, so a sender never imports the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery

from verifarm.rollout.config import FarmConfig

TASK_NAME = "verifarm.rollout.batch"
QUEUE = "verifarm.rollouts"
PRIORITY_STEPS = tuple(range(10))
QUEUE_SEP = ":"
# The Celery config key that carries the FarmConfig to every worker process.
FARM_KEY = "verifarm_farm"


def queue_keys() -> list[str]:
    """The Redis lists kombu keeps the queue in: the queue itself for priority 0, `<queue>:<p>` for the others."""
    return [QUEUE] + [f"{QUEUE}{QUEUE_SEP}{step}" for step in PRIORITY_STEPS if step]


def celery_settings(farm: FarmConfig) -> dict[str, Any]:
    tuning = farm.tuning
    return {
        "broker_url": farm.broker_url,
        "result_backend": farm.broker_url,
        "task_ignore_result": True,  # progress lives in the store, not in task results
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,  # a killed pool process puts its batch back on the queue
        "task_acks_on_failure_or_timeout": True,  # a batch that raised is a bug: do not loop on it
        "worker_prefetch_multiplier": 1,  # a worker holds no batch it is not working on
        "worker_cancel_long_running_tasks_on_connection_loss": False,  # they finish; a redelivery skips them
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a restarting Redis is waited for, not given up on
        "broker_transport_options": {
            "visibility_timeout": tuning.visibility_timeout_s,
            "unacked_restore_interval": tuning.restore_interval_s,
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
            "priority_steps": list(PRIORITY_STEPS),
            "sep": QUEUE_SEP,
        },
        "result_backend_transport_options": {"visibility_timeout": tuning.visibility_timeout_s},
        "worker_proc_alive_timeout": 120,  # pool processes start slowly on a busy machine
        # Task events cost three broker messages per batch; Flower switches them on when it starts
        # (`enable_events`), and `celery -A verifarm.rollout.app control enable_events` does too.
        "worker_send_task_events": False,
        FARM_KEY: farm.model_dump(mode="json"),
    }


def farm_of(app: Celery) -> FarmConfig:
    """The FarmConfig an app was configured with (in a worker process: the one its starter resolved)."""
    return FarmConfig.model_validate(app.conf[FARM_KEY])


def sender_app(farm: FarmConfig) -> Celery:
    """A Celery app on the farm's broker for sending batches and pinging workers; it runs no tasks."""
    app = Celery("verifarm.rollout.sender", set_as_current=False)
    app.add_defaults(celery_settings(farm))
    return app


def enqueue_batches(app: Celery, campaign_id: str, priority: int, batch_indices: Iterable[int]) -> int:
    """One message per batch, with the campaign's priority (Redis pops lower numbers first)."""
    count = 0
    with app.producer_or_acquire() as producer:
        for batch_index in batch_indices:
            app.send_task(
                TASK_NAME,
                args=[campaign_id, int(batch_index)],
                priority=9 - priority,
                queue=QUEUE,
                producer=producer,
                task_id=f"{campaign_id}:{batch_index}",
            )
            count += 1
    return count
