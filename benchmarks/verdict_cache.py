"""Verdict cache: rollouts with the farm's shared verdict cache vs the same rollouts verifying every completion.

A campaign at low temperature repeats itself: a task's n samples are mostly the same few texts, and a campaign
that draws the same tasks again (another round, a re-run with a new policy version that changed little) repeats
them wholesale. The load-test `ReferencePolicy` with 30% corruption stands in for such a policy: each of a task's
8 samples is the reference answer or a near miss of it, so a task has a handful of distinct completions.

Per env (arithmetic, Python functions in the sandbox), all in one store, rounds interleaved:

  baseline   `rollout_batch` without a cache: every completion verified (the behaviour before the cache)
  cold       with a cache emptied first: the campaign's own repeats are served from it
  warm       the same tasks again in a new campaign, the cache holding the cold run's verdicts

    python benchmarks/verdict_cache.py --quick
    python benchmarks/verdict_cache.py --store sqlite --tasks 32 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import CampaignSpec, parse_spec
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore
from verifarm.rollout.verdict_cache import VerdictCache

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
ENVS = {
    "arithmetic": {"env_id": "verifarm/Arithmetic-v0", "min_difficulty": 2, "max_difficulty": 6},
    "python": {"env_id": "verifarm/PythonFunction-v0"},
}


def spec_for(env: dict, tasks: int, samples: int) -> CampaignSpec:
    return parse_spec(
        {
            "envs": [env],
            "tasks": tasks,
            "samples_per_task": samples,
            "batch_size": 8,
            "policy": "reference",
            "reference_corruption": 0.3,
            "seed": 7,
        }
    )


def run_campaign(store: RolloutStore, spec: CampaignSpec, families: FamilyCache, cache: VerdictCache | None):
    """Roll out the whole campaign under a fresh id; returns (seconds, records, verdicts reused)."""
    campaign_id = f"vc-{uuid.uuid4().hex[:10]}"
    store.create_campaign(campaign_id, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, 5)
    policy = ReferencePolicy(spec.reference_corruption, spec.seed)
    started = time.perf_counter()
    written = reused = 0
    for batch in range(spec.num_batches):
        report = rollout_batch(store, campaign_id, spec, spec.batch_range(batch), policy, families, 2, cache)
        written += report.records_written
        reused += report.verdicts_cached
    return time.perf_counter() - started, written, reused


def bench_env(store: RolloutStore, name: str, spec: CampaignSpec, rounds: int) -> dict[str, float]:
    families = FamilyCache()
    cache = VerdictCache(store.engine)
    run_campaign(store, spec, families, None)  # warm-up: sandbox pool, imports, data sets
    times: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
    hits: dict[str, float] = {}
    for index in range(rounds):
        order = ["baseline", "cold", "warm"] if index % 2 == 0 else ["cold", "warm", "baseline"]
        for mode in order:
            if mode == "cold":
                with store.engine.begin() as conn:
                    conn.execute(sqlalchemy.delete(cache.table))
            seconds, written, reused = run_campaign(store, spec, families, None if mode == "baseline" else cache)
            times[mode].append(seconds)
            hits[mode] = reused / written
    families.close()
    records = spec.tasks * spec.samples_per_task
    base = statistics.median(times["baseline"])
    row = {"records": records}
    for mode in ("baseline", "cold", "warm"):
        median = statistics.median(times[mode])
        row[f"{mode}_rps"] = records / median
        row[f"{mode}_hit"] = hits[mode] if mode != "baseline" else 0.0
        row[f"{mode}_speedup"] = base / median
    print(
        f"{name:<11} {records:>5} records | baseline {row['baseline_rps']:8.1f} rollouts/s | "
        f"cold {row['cold_rps']:8.1f}/s hit {row['cold_hit']:5.1%} | warm {row['warm_rps']:8.1f}/s "
        f"hit {row['warm_hit']:5.1%} | speedup cold {row['cold_speedup']:.2f}x warm {row['warm_speedup']:.2f}x",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 tasks, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rounds = 16, 2
    schema = f"vf_bench_{uuid.uuid4().hex[:10]}"
    admin = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.store == "postgresql":
            admin = sqlalchemy.create_engine(POSTGRES_URL)
            with admin.begin() as conn:
                conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
            url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            print(
                f"store {args.store}, {args.tasks} tasks x {args.samples} samples, {args.rounds} rounds, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            with RolloutStore(url) as store:
                for name, env in ENVS.items():
                    bench_env(store, name, spec_for(env, args.tasks, args.samples), args.rounds)
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            if admin is not None:
                with admin.begin() as conn:
                    conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
