"""Prometheus metrics of the rollout workers: rollouts by env and outcome, sampling and verification latency,
sandbox infra errors by backend, sampled tokens, and the broker's queue depth.

Batches run in Celery's prefork pool processes, so the counters use prometheus-client's multiprocess mode:
with `VERIFARM_METRICS_WORKER_PORT` set, the worker's main process (at `worker_init`, before the pool forks)
points every process at one folder of metric files and serves their sum on that port. Without it the same
counters still count, in each process's own registry, and nothing listens.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from verifarm.rollout.broker import queue_keys
from verifarm.rollout.store import RolloutRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class WorkerMetricsSettings(BaseSettings):
    """Where a worker serves its metrics (VERIFARM_METRICS_WORKER_*); no port, no exporter."""

    model_config = SettingsConfigDict(env_prefix="VERIFARM_METRICS_WORKER_", extra="ignore")

    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"  # 0.0.0.0 for a Prometheus on another machine


@dataclass(frozen=True)
class WorkerMetrics:
    rollouts: Any
    verify_seconds: Any
    sample_seconds: Any
    infra_errors: Any
    infra_retries: Any
    sampled_tokens: Any


_metrics: WorkerMetrics | None = None


def worker_metrics() -> WorkerMetrics:
    """The process's metrics, made on first use: after `export_worker_metrics` chose multiprocess values."""
    global _metrics
    if _metrics is None:
        from prometheus_client import Counter, Histogram

        _metrics = WorkerMetrics(
            rollouts=Counter("verifarm_rollouts", "rollout records stored, by env and outcome", ["env", "outcome"]),
            verify_seconds=Histogram(
                "verifarm_verify_seconds",
                "verification time per completion (retries included)",
                ["env"],
                buckets=LATENCY_BUCKETS,
            ),
            sample_seconds=Histogram(
                "verifarm_sample_seconds", "policy sampling time per batch", ["policy"], buckets=LATENCY_BUCKETS
            ),
            infra_errors=Counter(
                "verifarm_sandbox_infra_errors",
                "records whose verifier could not judge (sandbox failures after retries), by sandbox backend",
                ["backend"],
            ),
            infra_retries=Counter("verifarm_sandbox_infra_retries", "sandbox failures retried", ["campaign"]),
            sampled_tokens=Counter("verifarm_sampled_tokens", "completion tokens sampled by workers", ["env"]),
        )
    return _metrics


def observe_batch(
    campaign_id: str, records: Sequence[RolloutRecord], policy_name: str, sample_seconds: float, infra_retries: int
) -> None:
    """Count one rolled-out batch (called by `rollout_batch` once its records are stored)."""
    metrics = worker_metrics()
    metrics.sample_seconds.labels(policy_name).observe(sample_seconds)
    if infra_retries:
        metrics.infra_retries.labels(campaign_id).inc(infra_retries)
    for record in records:
        metrics.rollouts.labels(record.env_id, record.outcome).inc()
        metrics.verify_seconds.labels(record.env_id).observe(record.verify_seconds)
        if record.outcome == "infra_error":
            metrics.infra_errors.labels(record.sandbox_backend or "unknown").inc()
        if record.token_ids:
            metrics.sampled_tokens.labels(record.env_id).inc(len(record.token_ids))


class QueueDepthCollector:
    """`verifarm_queue_depth{priority}`: batches waiting in the broker, read from Redis at scrape time."""

    def __init__(self, broker_url: str, keys: Iterable[str]):
        self.broker_url = broker_url
        self.keys = list(keys)

    def collect(self):
        import redis
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "verifarm_queue_depth", "batches waiting in the broker by queue key", labels=["queue"]
        )
        client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
        try:
            for key in self.keys:
                family.add_metric([key], float(client.llen(key)))
        except redis.RedisError:
            return []  # a broker that is down has no depth to report; the scrape itself still succeeds
        finally:
            client.close()
        return [family]


def export_worker_metrics(settings: WorkerMetricsSettings, broker_url: str | None, queue_keys: Iterable[str]):
    """Serve the summed metrics of this process and every pool process it forks; returns the folder used."""
    if settings.port is None:
        raise ValueError("no VERIFARM_METRICS_WORKER_PORT: a worker without a port serves no metrics")
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    folder = tempfile.mkdtemp(prefix="verifarm-worker-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # prometheus-client picks the value class when first imported; metrics made from now on (in this process
    # and in pool processes forked from it) write to the shared folder.
    values.ValueClass = values.MultiProcessValue()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)
    if broker_url:
        registry.register(QueueDepthCollector(broker_url, queue_keys))
    start_http_server(settings.port, addr=settings.host, registry=registry)
    return folder


def serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    """Celery `worker_init` receiver: start the exporter when VERIFARM_METRICS_WORKER_PORT asks for one."""
    settings = WorkerMetricsSettings()
    if settings.port is None or sender is None:
        return
    broker = sender.app.conf.get("broker_url")
    folder = export_worker_metrics(settings, broker, queue_keys())
    import atexit

    atexit.register(shutil.rmtree, folder, True)
