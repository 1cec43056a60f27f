"""The farm's Celery app: one thin, idempotent task that rolls out one batch of one campaign.

Run a pool with `verifarm workers start` or `celery -A verifarm.rollout.app worker`. The task takes ids, not
objects; acks late, so a batch whose worker dies is delivered again (after the visibility timeout, or at once when
only a pool process died) and its deterministic record ids make the second run write nothing twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_init

from verifarm.rollout.config import FarmConfig
from verifarm.rollout.metrics import serve_worker_metrics

TASK_NAME = "verifarm.rollout.batch"
QUEUE = "verifarm.rollouts"
PRIORITY_STEPS = tuple(range(10))
QUEUE_SEP = ":"


def queue_keys() -> list[str]:
    """The Redis lists kombu keeps the queue in: the queue itself for priority 0, `<queue>:<p>` for the others."""
    return [QUEUE] + [f"{QUEUE}{QUEUE_SEP}{step}" for step in PRIORITY_STEPS if step]


def celery_settings(farm: FarmConfig) -> dict[str, Any]:
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
            "visibility_timeout": farm.visibility_timeout_s,
            "unacked_restore_interval": farm.restore_interval_s,
            "unacked_restore_throttle": 1,
            "queue_order_strategy": "priority",
            "priority_steps": list(PRIORITY_STEPS),
            "sep": QUEUE_SEP,
        },
        "result_backend_transport_options": {"visibility_timeout": farm.visibility_timeout_s},
        "worker_proc_alive_timeout": 120,  # pool processes start slowly on a busy machine
        # Task events cost three broker messages per batch; Flower switches them on when it starts
        # (`enable_events`), and `celery -A verifarm.rollout.app control enable_events` does too.
        "worker_send_task_events": False,
        "verifarm_farm": farm.model_dump(mode="json"),
    }


class WorkerRuntime:
    """What one worker process keeps between batches: its store connection, task families and policy."""

    def __init__(self, farm: FarmConfig) -> None:
        from verifarm.envs.catalog import FamilyCache
        from verifarm.rollout.policy_source import CheckpointPolicySource
        from verifarm.rollout.store import RolloutStore

        self.pid = os.getpid()
        self.farm = farm
        self.store = RolloutStore(farm.store_url)
        self.families = FamilyCache()
        self.policies = CheckpointPolicySource(
            farm.checkpoint_dir, torch_threads=farm.torch_threads, registry_url=farm.registry_url
        )
        self._specs: dict[str, Any] = {}  # specs never change once stored

    def run_batch(self, campaign_id: str, batch_index: int) -> dict[str, Any]:
        from verifarm.rollout.campaign import parse_spec
        from verifarm.rollout.rollouts import rollout_batch

        if campaign_id not in self._specs:
            row = self.store.get_campaign(campaign_id)
            if row is None:
                return {"campaign_id": campaign_id, "batch_index": batch_index, "missing_campaign": True}
            self._specs[campaign_id] = parse_spec(row.spec)
        spec = self._specs[campaign_id]
        if self.store.is_cancelled(campaign_id):  # before loading any policy for it
            return {"campaign_id": campaign_id, "batch_index": batch_index, "cancelled": True}
        sampler = self.policies.sampler_for_spec(spec)  # "latest": a newer checkpoint is swapped in here
        report = rollout_batch(
            self.store,
            campaign_id,
            spec,
            spec.batch_range(batch_index),
            sampler,
            self.families,
            self.farm.infra_retries,
        )
        return {"batch_index": batch_index, **report.as_dict()}


def _runtime(app: Celery) -> WorkerRuntime:
    # Built lazily inside each pool process (database connections must not cross a fork).
    runtime = getattr(app, "verifarm_runtime", None)
    if runtime is None or runtime.pid != os.getpid():
        runtime = WorkerRuntime(FarmConfig.model_validate(app.conf["verifarm_farm"]))
        app.verifarm_runtime = runtime
    return runtime


def create_app(farm: FarmConfig | None = None) -> Celery:
    """The Celery app for `farm`; with None, the farm is read from the VERIFARM_* settings when first needed."""
    app = Celery("verifarm.rollout", set_as_current=False)
    if farm is None:

        def settings_from_environment() -> dict[str, Any]:
            from verifarm.settings import load_settings

            return celery_settings(FarmConfig.from_settings(load_settings()))

        app.add_defaults(settings_from_environment)  # lazy: importing this module needs no broker
    else:
        app.add_defaults(celery_settings(farm))

    # A batch that raised (a database blip, a bug) is retried a few times with backoff, then given up on;
    # `campaign requeue` can enqueue it again once the cause is fixed.
    # shared=False: a shared task would be added to every app created after this one as well, and each
    # create_app() call would then register the name twice (Celery's DuplicateTaskNameWarning at worker start).
    @app.task(
        name=TASK_NAME,
        bind=True,
        autoretry_for=(Exception,),
        max_retries=3,
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=False,
        shared=False,
    )
    def rollout_batch_task(self: Any, campaign_id: str, batch_index: int) -> dict[str, Any]:
        return _runtime(self.app).run_batch(campaign_id, int(batch_index))

    app.steps["worker"].add(BatchReconciler)
    return app


class BatchReconciler(bootsteps.StartStopStep):
    """Worker bootstep: periodically re-enqueue batches the broker lost (see `verifarm.rollout.reconcile`)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.entry: Any = None

    def start(self, worker: Any) -> None:
        from verifarm.rollout.reconcile import start_sweeping

        farm = FarmConfig.model_validate(worker.app.conf["verifarm_farm"])
        self.entry = start_sweeping(worker, farm, queue_keys())

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None


@worker_init.connect
def _import_policy_stack(**_: Any) -> None:
    # Imported once in the worker's main process, before the pool forks, so that no pool process spends its
    # first batch importing torch and transformers (and overruns the visibility timeout doing so).
    import verifarm.policy.sampling  # noqa: F401  (imported for its side effect: modules loaded before fork)


worker_init.connect(serve_worker_metrics)  # a Prometheus exporter when VERIFARM_METRICS_WORKER_PORT is set


def enqueue_batches(app: Celery, campaign_id: str, spec: Any, batch_indices: Iterable[int]) -> int:
    """One message per batch, with the campaign's priority (Redis pops lower numbers first)."""
    count = 0
    with app.producer_or_acquire() as producer:
        for batch_index in batch_indices:
            app.send_task(
                TASK_NAME,
                args=[campaign_id, int(batch_index)],
                priority=9 - spec.priority,
                queue=QUEUE,
                producer=producer,
                task_id=f"{campaign_id}:{batch_index}",
            )
            count += 1
    return count


app = create_app()
