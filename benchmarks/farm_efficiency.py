"""Farm efficiency: rollouts/s through the farm (2 workers, Redis, store) vs the same rollouts in one process.

Both sides roll out the same campaign shape into the same kind of store in the same run:

  in-process  `rollout_batch` called batch after batch in this process: no broker, no worker
  farm        the campaign submitted to a private Redis and rolled out by 2 worker processes (concurrency 1 each)

It prints efficiency = farm rate / (in-process rate x workers), last. Target >= 0.85.

The policy is the load-test `ReferencePolicy` (the env's reference answer, 20% corrupted) and the env is 3- to
6-digit addition, whose verifier is a string comparison: per-rollout work is small on purpose, so what the ratio
measures is the farm's own overhead (broker round trips, task dispatch, concurrent store writes). Note that on a
2-core machine the 2 workers share the cores with Redis, the database server and this script, so the ideal 1.0
is out of reach there; the figure is a lower bound of the farm's efficiency.

    python benchmarks/farm_efficiency.py --quick
    python benchmarks/farm_efficiency.py --store postgresql --tasks 4000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy

from verifarm.rollout.campaign import CampaignSpec, parse_spec, submit
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.pool import WorkerPool
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import FamilyCache, rollout_batch
from verifarm.rollout.store import RecordFilter, RolloutStore

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
WORKERS = 2


def campaign_spec(tasks: int, samples: int, batch_size: int, seed: int) -> CampaignSpec:
    return parse_spec({
        "name": "bench", "envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 3, "max_difficulty": 6}],
        "tasks": tasks, "samples_per_task": samples, "batch_size": batch_size, "policy": "reference",
        "reference_corruption": 0.2, "seed": seed,
    })


def create(store: RolloutStore, campaign_id: str, spec: CampaignSpec) -> None:
    store.create_campaign(campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task,
                          spec.priority)


def in_process_rate(store_url: str, spec: CampaignSpec) -> tuple[float, int]:
    """Rollouts/s of one process rolling the campaign out batch after batch."""
    with RolloutStore(store_url) as store:
        campaign_id = f"inproc-{uuid.uuid4().hex[:8]}"
        create(store, campaign_id, spec)
        families, policy = FamilyCache(), ReferencePolicy(spec.reference_corruption, spec.seed)
        rollout_batch(store, campaign_id, spec, spec.batch_range(0), policy, families)  # warm caches, not timed
        started = time.perf_counter()
        for batch in range(1, spec.num_batches):
            rollout_batch(store, campaign_id, spec, spec.batch_range(batch), policy, families)
        seconds = time.perf_counter() - started
        done = store.count(RecordFilter(campaign_id=campaign_id)) - len(spec.batch_range(0)) * spec.samples_per_task
    return done / seconds, done


def farm_rate(farm: FarmConfig, spec: CampaignSpec, log_dir: Path) -> tuple[float, int]:
    """Rollouts/s from submission to the last record stored, with the workers already up and warm."""
    expected = spec.tasks * spec.samples_per_task
    with WorkerPool(farm, log_dir, processes=WORKERS, concurrency=1, name="bench") as pool:
        pool.wait_ready()
        warm = submit(campaign_spec(WORKERS * 2, spec.samples_per_task, 1, spec.seed + 1), farm)
        with RolloutStore(farm.store_url) as store:
            while store.count(RecordFilter(campaign_id=warm.campaign_id)) < WORKERS * 2 * spec.samples_per_task:
                pool.check_alive()
                time.sleep(0.2)
            started = time.time()
            row = submit(spec, farm)
            while store.count(RecordFilter(campaign_id=row.campaign_id)) < expected:
                pool.check_alive()
                time.sleep(0.25)  # a slow poll: this script must not take CPU from the workers
            _, last = store.time_span(row.campaign_id)
    return expected / (last.timestamp() - started), expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=50, help="tasks per Celery task")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = 800 if args.quick else args.tasks
    spec = campaign_spec(tasks, args.samples, args.batch_size, args.seed)

    with tempfile.TemporaryDirectory(prefix="verifarm-bench-") as scratch:
        root = Path(scratch)
        schema = None
        if args.store == "postgresql":
            schema = f"vf_bench_{uuid.uuid4().hex[:10]}"
            admin = sqlalchemy.create_engine(POSTGRES_URL)
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
            store_url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        else:
            store_url = f"sqlite:///{root / 'rollouts.db'}"
        redis = EmbeddedRedis(root / "redis")
        broker_url, redis_pid = redis.start()
        try:
            farm = FarmConfig(broker_url=broker_url, store_url=store_url, checkpoint_dir=root / "checkpoints")
            RolloutStore(store_url).close()  # tables exist before either side starts its clock
            print(f"campaign: {tasks} tasks x {args.samples} samples, {spec.num_batches} batches of {args.batch_size}"
                  f" tasks; reference policy, addition 3-6 digits; store {args.store}")
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            # In-process runs before and after the farm, averaged: the machine's load drifts during a run.
            before, n_in = in_process_rate(store_url, spec)
            print(f"in-process (1 process, no broker): {n_in} rollouts, {before:,.0f} rollouts/s")
            rate_farm, n_farm = farm_rate(farm, spec, root / "logs")
            print(f"farm ({WORKERS} workers, Redis, store):   {n_farm} rollouts, {rate_farm:,.0f} rollouts/s")
            after, _ = in_process_rate(store_url, spec)
            print(f"in-process again:                  {n_in} rollouts, {after:,.0f} rollouts/s")
            rate_in = (before + after) / 2
            print(f"load average after: {os.getloadavg()[0]:.1f}")
            print(f"ideal farm rate = mean in-process x {WORKERS} = {rate_in * WORKERS:,.0f} rollouts/s")
        finally:
            redis.stop(redis_pid)
            if schema is not None:
                with admin.begin() as conn:
                    conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(f"efficiency = farm rate / (in-process rate x {WORKERS}) = {rate_farm / (rate_in * WORKERS):.2f}")


if __name__ == "__main__":
    main()
