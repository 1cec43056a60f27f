"""The farm's Celery app: one thin, idempotent task that rolls out one batch of one campaign.

Run a pool with `verifarm workers start` or `celery -A verifarm.rollout.app worker`. The task takes ids, not
objects; acks late, so a batch whose worker dies is delivered again (after the visibility timeout, or at once when
only a pool process died) and its deterministic record ids make the second run write nothing twice. The worker's
FarmConfig comes with the app's config (`broker.FARM_KEY`), resolved once by whoever started the worker.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_init

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.broker import QUEUE, TASK_NAME, celery_settings, farm_of, queue_keys
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.metrics import serve_worker_metrics

# torch and transformers load with the policy source, so a worker's main process holds them before its pool
# forks: no pool process spends its first batch importing them (and overruns the visibility timeout doing so).
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.reconcile import start_sweeping
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.verdict_cache import VerdictCache
from verifarm.settings import load_settings


class WorkerRuntime:
    """What one worker process keeps between batches: its store connection, task families and policy."""

    def __init__(self, farm: FarmConfig) -> None:
        self.pid = os.getpid()
        self.farm = farm
        self.store = RolloutStore(farm.store_url)
        self.verdicts = VerdictCache(self.store.engine)  # shared by every worker of the farm
        self.families = FamilyCache(sandbox_backend=farm.sandbox_backend)
        self.policies = CheckpointPolicySource(
            farm.checkpoint_dir, torch_threads=farm.tuning.torch_threads, registry_url=farm.registry_url
        )
        self._specs: dict[str, Any] = {}  # specs never change once stored

    def run_batch(self, campaign_id: str, batch_index: int) -> dict[str, Any]:
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
            self.farm.tuning.infra_retries,
            self.verdicts,
        )
        return {"batch_index": batch_index, **report.as_dict()}


def _runtime(app: Celery) -> WorkerRuntime:
    # Built lazily inside each pool process (database connections must not cross a fork).
    runtime = getattr(app, "verifarm_runtime", None)
    if runtime is None or runtime.pid != os.getpid():
        runtime = WorkerRuntime(farm_of(app))
        app.verifarm_runtime = runtime
    return runtime


def create_app(farm: FarmConfig | None = None) -> Celery:
    """The worker's Celery app for `farm`; with None (`celery -A verifarm.rollout.app worker`), the farm is
    resolved from the VERIFARM_* settings once, when the app's config is first needed."""
    app = Celery("verifarm.rollout", set_as_current=False)
    if farm is None:
        # lazy: importing this module needs no broker and reads no settings
        app.add_defaults(lambda: celery_settings(FarmConfig.from_settings(load_settings())))
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


def run_worker(farm: FarmConfig, concurrency: int, name: str, loglevel: str) -> None:
    """Run a worker of `farm` with `concurrency` pool processes in this process until it is stopped (blocks)."""
    # No gossip or mingle: the farm keeps its state in the store, not in worker-to-worker chatter.
    create_app(farm).worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--hostname={name}",
            f"--loglevel={loglevel}",
            f"--queues={QUEUE}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


class BatchReconciler(bootsteps.StartStopStep):
    """Worker bootstep: periodically re-enqueue batches the broker lost (see `verifarm.rollout.reconcile`)."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.entry: Any = None

    def start(self, worker: Any) -> None:
        self.entry = start_sweeping(worker, farm_of(worker.app), queue_keys())

    def stop(self, worker: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None


worker_init.connect(serve_worker_metrics)  # a Prometheus exporter when VERIFARM_METRICS_WORKER_PORT is set


app = create_app()
