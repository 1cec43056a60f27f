"""Farm efficiency: rollouts/s through the farm (2 workers, Redis, store) vs the same rollouts in one process.

Both sides roll out the same campaign shape into the same store in the same run:

  in-process  `rollout_batch` called batch after batch in this process: no broker, no worker
  farm        the campaign submitted to a private Redis and rolled out by 2 worker processes (concurrency 1
              each), started and warmed up before the clock starts

The two alternate for a few rounds (the machine's load drifts: other jobs share it), and the medians are
compared. The last line is efficiency = farm rate / (in-process rate x workers); target >= 0.85.

By default the tiny MoE policy (random weights, version 1 of a private registry) really samples 48 tokens per
rollout, as a real campaign does, on 3- to 6-digit addition: the farm's overhead is measured against real work.

With `--policy reference` the policy is the load-test `ReferencePolicy` (the env's reference answer, 20%
corrupted), whose per-rollout work is a few microseconds on purpose, so what the ratio measures is the farm's own
overhead (broker round trips, task dispatch, concurrent store writes). On a 2-core
machine the 2 workers share the cores with Redis, the database server and this script, so the wall-clock ratio
there is a lower bound; the CPU line (CPU seconds per rollout of this process vs of the worker processes and
Redis) shows the overhead free of that contention.

    python benchmarks/farm_efficiency.py --quick
    python benchmarks/farm_efficiency.py --policy reference
    python benchmarks/farm_efficiency.py --store sqlite --rounds 5
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
from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.rollout.campaign import CampaignSpec, parse_spec
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.orchestration import roll_out_batches, store_campaign
from verifarm.rollout.policy_source import CheckpointPolicySource
from verifarm.rollout.pool import WorkerPool
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.submission import submit

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
WORKERS = 2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def campaign_spec(tasks: int, samples: int, batch_size: int, seed: int, policy: str = "reference") -> CampaignSpec:
    """`reference`: the load-test policy (farm overhead only); `tiny`: version 1 of the registry, really sampled."""
    sampled = (
        {"policy": 1, "sampling": {"temperature": 1.0, "max_new_tokens": 48}}
        if policy == "tiny"
        else {"policy": "reference", "reference_corruption": 0.2}
    )
    return parse_spec(
        {
            "name": "bench",
            "envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 3, "max_difficulty": 6}],
            "tasks": tasks,
            "samples_per_task": samples,
            "batch_size": batch_size,
            "seed": seed,
            **sampled,
        }
    )


def publish_tiny_policy(checkpoint_dir: Path) -> None:
    """Version 1: the tiny preset with seeded random weights (sampling cost is what matters here, not answers)."""
    tokenizer = build_tokenizer()
    CheckpointRegistry(checkpoint_dir).publish(
        build_model("tiny", len(tokenizer), seed=0), tokenizer, {"source": "farm_efficiency benchmark, random weights"}
    )


def tree_cpu_seconds(root_pids: list[int]) -> float:
    """User + system CPU seconds of these processes and all their descendants (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    wanted, frontier = set(root_pids), list(root_pids)
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in wanted:
                wanted.add(child)
                frontier.append(child)
    total = 0.0
    for pid in wanted:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return total


def in_process_round(
    store: RolloutStore, spec: CampaignSpec, source: CheckpointPolicySource
) -> tuple[float, float, int]:
    """(rollouts/s, CPU seconds per rollout, rollouts) of this process rolling the campaign out alone."""
    campaign_id = f"inproc-{uuid.uuid4().hex[:8]}"
    store_campaign(store, spec, campaign_id)
    families, policy = FamilyCache(), source.sampler_for_spec(spec)
    wall, cpu = time.perf_counter(), time.process_time()
    roll_out_batches(store, campaign_id, spec, policy, families)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = store.count(RecordFilter(campaign_id=campaign_id))
    return done / wall, cpu / done, done


def farm_round(
    store: RolloutStore, farm: FarmConfig, spec: CampaignSpec, pool: WorkerPool, farm_pids: list[int]
) -> tuple[float, float, int]:
    """(rollouts/s, CPU seconds per rollout of workers + Redis, rollouts) from submission to the last record."""
    expected = spec.tasks * spec.samples_per_task
    cpu = tree_cpu_seconds(farm_pids)
    started = time.time()
    row = submit(spec, farm)
    while store.count(RecordFilter(campaign_id=row.campaign_id)) < expected:
        pool.check_alive()
        time.sleep(0.25)  # a slow poll: this script must not take CPU from the workers
    cpu = tree_cpu_seconds(farm_pids) - cpu
    _, last = store.time_span(row.campaign_id)
    return expected / (last.timestamp() - started), cpu / expected, expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute)")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per campaign (one campaign per round)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=50, help="tasks per Celery task")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--policy",
        choices=("reference", "tiny"),
        default="tiny",
        help="reference: farm overhead alone; tiny: the tiny MoE policy really samples 48 tokens",
    )
    args = parser.parse_args()
    if args.policy == "tiny":  # a rollout costs milliseconds, not microseconds: fewer are needed
        tasks, rounds = (32, 2) if args.quick else (min(args.tasks, 96), args.rounds)
        args.batch_size = min(args.batch_size, 4)
    else:
        tasks, rounds = (600, 2) if args.quick else (args.tasks, args.rounds)
    spec = campaign_spec(tasks, args.samples, args.batch_size, args.seed, args.policy)

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
        farm = FarmConfig(broker_url=broker_url, store_url=store_url, checkpoint_dir=root / "checkpoints")
        if args.policy == "tiny":
            publish_tiny_policy(farm.checkpoint_dir)
        source = CheckpointPolicySource(farm.checkpoint_dir)
        in_rates, in_cpu, farm_rates, farm_cpu = [], [], [], []
        try:
            print(
                f"campaign per round: {tasks} tasks x {args.samples} samples, {spec.num_batches} batches of "
                f"{args.batch_size} tasks; {args.policy} policy, addition 3-6 digits; store {args.store}"
            )
            print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
            with RolloutStore(store_url) as store, WorkerPool(farm, root / "logs", WORKERS, 1, "bench") as pool:
                pool.wait_ready()
                farm_pids = [p.pid for p in pool.processes] + [redis_pid]
                warm_tasks = 8 if args.policy == "tiny" else 100
                in_process_round(
                    store, campaign_spec(warm_tasks, args.samples, args.batch_size, 99, args.policy), source
                )  # warm-up
                farm_round(store, farm, campaign_spec(4 * WORKERS, args.samples, 1, 98, args.policy), pool, farm_pids)
                for index in range(rounds):
                    seed_spec = campaign_spec(tasks, args.samples, args.batch_size, args.seed + index, args.policy)
                    rate, cpu, n = in_process_round(store, seed_spec, source)
                    in_rates.append(rate)
                    in_cpu.append(cpu)
                    print(f"round {index + 1}: in-process {n} rollouts {rate:,.0f}/s", end="", flush=True)
                    rate, cpu, n = farm_round(store, farm, seed_spec, pool, farm_pids)
                    farm_rates.append(rate)
                    farm_cpu.append(cpu)
                    print(f" | farm {n} rollouts {rate:,.0f}/s")
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            redis.stop(redis_pid)
            if schema is not None:
                with admin.begin() as conn:
                    conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    rate_in, rate_farm = statistics.median(in_rates), statistics.median(farm_rates)
    cpu_in, cpu_farm = statistics.median(in_cpu), statistics.median(farm_cpu)
    print(f"in-process (1 process, no broker): median {rate_in:,.0f} rollouts/s")
    print(
        f"farm ({WORKERS} workers, Redis, store):   median {rate_farm:,.0f} rollouts/s "
        f"(ideal: {rate_in * WORKERS:,.0f})"
    )
    print(
        f"CPU per rollout: in-process {cpu_in * 1e3:.3f} ms, farm (workers + Redis) {cpu_farm * 1e3:.3f} ms "
        f"-> CPU efficiency {cpu_in / cpu_farm:.2f} (database server excluded on both sides)"
    )
    print(f"efficiency = farm rate / (in-process rate x {WORKERS}) = {rate_farm / (rate_in * WORKERS):.2f}")


if __name__ == "__main__":
    main()
