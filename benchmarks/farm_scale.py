"""Farm scale: the store's reads at 10,000 and at 1,000,000 records, submission cost, and the largest farm one
Redis and one PostgreSQL carry.

1. Reads at two store sizes (a private schema of the local PostgreSQL, filled server-side with
   `INSERT ... SELECT generate_series`, dropped afterwards). Campaigns of 5,000 records each (1,250 tasks x 4
   samples, a quarter repeating an earlier sample's content, as low-temperature sampling does); one campaign
   is half done (running: 5,000 of its 10,000 records), the rest are done. Measured at 10,000 records (2 campaigns), then the same store grown to
   1,000,000 (200 campaigns): `data ls` (whole store, deduplicated, and one campaign), `campaign status`, the
   reconcile sweep's store part (ours: the running-campaign index; baseline: every campaign's counts, as before),
   and `data export` of one campaign and of the whole store in a child process (wall time and peak RSS).
2. Submission: campaigns of 10,000 and 100,000 tasks in the same number of batches (100), and 100,000 tasks in
   1,000 batches, to a private Redis: time follows batches, not tasks.
3. Operations per rollout: SQL statements of a worker's batch (counted on its engine) and Redis commands per
   rollout of a real 1-worker farm (Redis `INFO commandstats`), then the capacity of this machine's Redis
   (`redis-benchmark`) and PostgreSQL (threads running a batch's statements) and the projected largest farm.

    python benchmarks/farm_scale.py               # 1,000,000 records (several minutes on 2 cores)
    python benchmarks/farm_scale.py --large 200000 --quick
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
import sqlalchemy
from sqlalchemy import event
from typer.testing import CliRunner

from verifarm.cli import app as cli_app
from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.app import WorkerRuntime
from verifarm.rollout.campaign import parse_spec, plan_task, status_from_store
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.pool import WorkerPool
from verifarm.rollout.reconcile import lost_campaigns
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import Attempt, build_records, verify_with_retries
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.submission import submit
from verifarm.rollout.verdict_cache import VerdictCache

POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
TASKS_PER_CAMPAIGN, SAMPLES = 1250, 4
CAMPAIGN_RECORDS = TASKS_PER_CAMPAIGN * SAMPLES
RUNNING = "scale-running"
LATER = datetime.now(timezone.utc) + timedelta(days=1)

# Sample s of task t: samples 0 and 3 give the same (passing) answer, 1 and 2 near misses.
FILL = sqlalchemy.text(
    """
    INSERT INTO rollout_records (record_id, campaign_id, env_id, env_version, task_index, task_seed, task_id,
        difficulty, group_id, group_size, sample_index, prompt, completion, reward, passed, reason, outcome,
        policy_version, policy_name, verifier_version, sandbox_backend, sample_seconds, verify_seconds,
        content_hash, details, created_at)
    SELECT md5(:campaign || ':' || i)::uuid::text, :campaign, 'verifarm/Addition-v0', 'v0', i / 4, i / 4,
        'addition:d3:s' || (i / 4), 3, :campaign || '/' || (i / 4), 4, i % 4,
        'What is ' || (i / 4) || ' + ' || (i / 4 + 7) || '?',
        'Let me add. Answer: ' || (2 * (i / 4) + 7 + (i % 4) % 3), 1.0 * ((i % 4) % 3 = 0)::int,
        (i % 4) % 3 = 0, 'answer checked', CASE WHEN (i % 4) % 3 = 0 THEN 'pass' ELSE 'fail' END,
        1, 'checkpoint', 'arithmetic-1', NULL, 0.01, 0.001,
        md5(:campaign || (i / 4) || ':' || ((i % 4) % 3)), '{}'::json,
        :created + (i * interval '1 millisecond')
    FROM generate_series(0, :count - 1) AS i
    """
)


def campaign_spec(tasks: int, batch_size: int) -> dict:
    return parse_spec(
        {
            "name": "scale",
            "envs": [{"env_id": "verifarm/Addition-v0"}],
            "tasks": tasks,
            "samples_per_task": SAMPLES,
            "batch_size": batch_size,
            "policy": "reference",
        }
    ).model_dump(mode="json")


def add_campaign(
    store: RolloutStore, campaign_id: str, records: int, created: datetime, tasks: int = TASKS_PER_CAMPAIGN
) -> None:
    store.create_campaign(campaign_id, "scale", campaign_spec(tasks, 8), tasks, SAMPLES, 5)
    with store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.update(store.campaigns)
            .where(store.campaigns.c.campaign_id == campaign_id)
            .values(created_at=created)
        )
        conn.execute(FILL, {"campaign": campaign_id, "count": records, "created": created})


def grow(store: RolloutStore, total: int) -> float:
    """Add done campaigns until the store holds `total` records; returns seconds spent."""
    started = time.perf_counter()
    have = store.count()
    index = len(store.campaign_ids())
    while have < total:
        created = datetime.now(timezone.utc) - timedelta(days=30) + timedelta(minutes=index)
        add_campaign(store, f"scale-{index:04d}", CAMPAIGN_RECORDS, created)
        have += CAMPAIGN_RECORDS
        index += 1
    # As autovacuum would after a while: statistics for the planner, the visibility map for index-only scans.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sqlalchemy.text("VACUUM (ANALYZE) rollout_records"))
    return time.perf_counter() - started


def timed_pair(functions: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function, called in turn `repeats` times (after one unmeasured round that warms
    caches): the machine's load drifts over both alike."""
    for function in functions:
        function()
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started = time.perf_counter()
            function()
            samples[index].append(time.perf_counter() - started)
    return [statistics.median(times) for times in samples]


def sweep_reading_every_campaign(store: RolloutStore, older_than: datetime) -> list[str]:
    """The sweep's store part before the running-campaign index: every campaign's counts, every time."""
    return [
        row.campaign_id
        for row in store.list_campaigns()
        if row.created_at <= older_than and status_from_store(store, row.campaign_id).state == "running"
    ]


def export_in_child(env: dict[str, str], out: Path, *options: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of `verifarm data export` in its own process."""
    command = [sys.executable, "-c", "from verifarm.cli import app; app()", "data", "export", str(out), *options]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"export failed: {process.stderr.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def measure_reads(stores: list[RolloutStore], envs: list[dict[str, str]], scratch: Path, repeats: int) -> list[dict]:
    """The reads on each store, each operation timed on all stores in turn."""
    runner = CliRunner()

    def cli(env: dict[str, str], *args: str) -> Callable[[], object]:
        def call() -> None:
            result = runner.invoke(cli_app, list(args), env=env)
            if result.exit_code != 0:
                raise RuntimeError(f"verifarm {' '.join(args)} failed: {result.output}")

        return call

    rows: list[dict] = [{"records": store.count(), "campaigns": len(store.campaign_ids())} for store in stores]
    for store in stores:
        lost_campaigns(store, LATER)  # the first sweep after an upgrade records the done campaigns, once
    operations: dict[str, Callable[[RolloutStore, dict], Callable[[], object]]] = {
        "data ls": lambda store, env: cli(env, "data", "ls"),
        "data ls --campaign": lambda store, env: cli(env, "data", "ls", "--campaign", RUNNING),
        "campaign status": lambda store, env: cli(env, "campaign", "status", RUNNING),
        "sweep (running index)": lambda store, env: lambda: lost_campaigns(store, LATER),
        "sweep (every campaign, as before)": lambda store, env: lambda: sweep_reading_every_campaign(store, LATER),
    }
    for name, make in operations.items():
        once = name.startswith("sweep (every")  # seconds per call at 1M records: one is enough
        seconds = timed_pair([make(store, env) for store, env in zip(stores, envs)], 1 if once else repeats)
        for row, value in zip(rows, seconds):
            row[name] = value
    for row, env in zip(rows, envs):
        seconds, rss = export_in_child(env, scratch / "campaign.jsonl", "--campaign", RUNNING)
        row["export campaign"], row["export campaign RSS MiB"] = seconds, rss
        seconds, rss = export_in_child(env, scratch / "all.jsonl")
        row["export all"], row["export all RSS MiB"] = seconds, rss
        row["export all us/record"] = 1e6 * seconds / row["records"]
    return rows


def print_reads(small: dict[str, float], large: dict[str, float]) -> None:
    print(f"\n| operation | {small['records']:,.0f} records | {large['records']:,.0f} records | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name in small:
        if name in ("records", "campaigns"):
            continue
        unit = "" if "MiB" in name or "us/" in name else " s"
        ratio = large[name] / small[name] if small[name] else float("nan")
        print(f"| {name} | {small[name]:.3f}{unit} | {large[name]:.3f}{unit} | **{ratio:.2f}x** |")


def measure_submit(farm: FarmConfig, repeats: int) -> None:
    client = redis.Redis.from_url(farm.broker_url)
    shapes = [(10_000, 100), (100_000, 1_000), (100_000, 100)]  # (tasks, batch size)
    times: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
    submit(parse_spec(campaign_spec(10, 10)), farm)  # warm-up: imports, connections
    for round_index in range(repeats):
        for tasks, batch in shapes if round_index % 2 == 0 else reversed(shapes):
            spec = parse_spec(campaign_spec(tasks, batch))
            started = time.perf_counter()
            submit(spec, farm)
            times[(tasks, batch)].append(time.perf_counter() - started)
            client.flushdb()
    print("\n| campaign | batches | submit |\n| --- | ---: | ---: |")
    for (tasks, batch), samples in times.items():
        print(f"| {tasks:,} tasks, batch size {batch:,} | {tasks // batch:,} | {statistics.median(samples):.3f} s |")
    ratio = statistics.median(times[(100_000, 1_000)]) / statistics.median(times[(10_000, 100)])
    print(f"100,000 vs 10,000 tasks at 100 batches: **{ratio:.2f}x**")


class StatementCounter:
    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1


def store_statements_per_rollout(farm: FarmConfig, batch_size: int, samples: int) -> float:
    spec = parse_spec(
        {
            "envs": [{"env_id": "verifarm/Addition-v0"}],
            "tasks": 20 * batch_size,
            "samples_per_task": samples,
            "batch_size": batch_size,
            "policy": "reference",
            "reference_corruption": 0.2,
        }
    )
    runtime = WorkerRuntime(farm)
    try:
        runtime.store.create_campaign("ops", "ops", spec.model_dump(mode="json"), spec.tasks, samples, 5)
        runtime.run_batch("ops", 0)  # warm-up: the campaign's spec is read once per worker process
        counter = StatementCounter(runtime.store.engine)
        for batch in range(1, spec.num_batches):
            runtime.run_batch("ops", batch)
        return counter.count / ((spec.num_batches - 1) * batch_size * samples)
    finally:
        runtime.store.close()


def redis_commands_per_rollout(farm: FarmConfig, scratch: Path, batch_size: int, samples: int) -> float:
    client = redis.Redis.from_url(farm.broker_url)
    spec = parse_spec(
        {
            "envs": [{"env_id": "verifarm/Addition-v0"}],
            "tasks": 100 * batch_size,
            "samples_per_task": samples,
            "batch_size": batch_size,
            "policy": "reference",
        }
    )
    with RolloutStore(farm.store_url) as store, WorkerPool(farm, scratch / "logs", 1, 1, "scale") as pool:
        pool.wait_ready()
        client.config_resetstat()
        row = submit(spec, farm)
        while store.count(RecordFilter(campaign_id=row.campaign_id)) < spec.tasks * samples:
            pool.check_alive()
            time.sleep(0.25)
        stats = client.info("commandstats")
    calls = sum(value["calls"] for key, value in stats.items() if key not in ("cmdstat_info", "cmdstat_config"))
    return calls / (spec.tasks * samples)


def redis_capacity(url: str) -> float:
    """Commands/s of this Redis for the broker's commonest commands (16 clients, no pipelining)."""
    match = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", url)
    host, port = match.group(1), match.group(2)
    output = subprocess.run(
        ["redis-benchmark", "-h", host, "-p", port, "-q", "-n", "100000", "-c", "16", "-t", "lpush,rpop,set,get"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = [float(x) for x in re.findall(r"([\d.]+) requests per second", output)]
    return statistics.mean(rates)


def store_capacity(url: str, batch_size: int, samples: int, threads: int = 4, seconds: float = 8.0) -> float:
    """Rollouts/s this PostgreSQL absorbs when `threads` clients run a batch's store statements back to back (no
    sampling, no verifying): the campaign checks, the verdict-cache round trips and the insert of the records."""
    spec = parse_spec(
        {
            "envs": [{"env_id": "verifarm/MathAnswer-v0"}],
            "tasks": 1_000_000,
            "samples_per_task": samples,
            "batch_size": batch_size,
            "policy": "reference",
        }
    )
    families, policy = FamilyCache(), ReferencePolicy()
    with RolloutStore(url) as store:
        store.create_campaign("capacity", "c", spec.model_dump(mode="json"), spec.tasks, samples, 5)
    done = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with RolloutStore(url) as store:
            cache = VerdictCache(store.engine)
            batch = offset
            while time.perf_counter() < stop:
                indices = list(spec.batch_range(batch))
                store.is_cancelled("capacity")
                store.complete_tasks("capacity", indices, samples)
                cache.lookup(f"{batch}:{i}" for i in range(len(indices) * samples))
                records = []
                for index in indices:
                    plan = plan_task(spec, index)
                    family = families.get(plan.env_id, plan.options)
                    task = family.generate(plan.seed, plan.difficulty)
                    sample = policy.sample_tasks([task], 1)[0][0]
                    verdict, _ = verify_with_retries(family, task, task.reference, 0)
                    attempts = [Attempt(task.prompt, sample, verdict, 0.0)] * samples
                    records += build_records("capacity", spec, plan, family, task, attempts, "reference", 0.0)
                for k, record in enumerate(records):  # distinct ids: every sample a new record
                    record.record_id = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{batch}:{k}"))
                store.add_records(records)
                with lock:
                    done[0] += len(records)
                batch += threads

    workers = [threading.Thread(target=client, args=(offset,)) for offset in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000, help="records of the small store")
    parser.add_argument("--large", type=int, default=1_000_000, help="records of the large store")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the farm run and the capacity measurements")
    args = parser.parse_args()
    schemas = [f"vf_scale_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    urls = [f"{POSTGRES_URL}?options=-csearch_path%3D{schema}" for schema in schemas]
    url = urls[0]
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="verifarm-scale-") as tmp:
        scratch = Path(tmp)
        envs = [{**os.environ, "VERIFARM_DATABASE_URL": u, "VERIFARM_HOME": str(scratch / "home")} for u in urls]
        redis_server = EmbeddedRedis(scratch / "redis")
        broker_url, redis_pid = redis_server.start()
        farm = FarmConfig(broker_url=broker_url, store_url=url, checkpoint_dir=scratch / "checkpoints")
        try:
            with RolloutStore(urls[0]) as small_store, RolloutStore(urls[1]) as large_store:
                for store, size in ((small_store, args.small), (large_store, args.large)):
                    # Half done: 5,000 of its 10,000 records.
                    created = datetime.now(timezone.utc) - timedelta(hours=1)
                    add_campaign(store, RUNNING, CAMPAIGN_RECORDS, created, tasks=2 * TASKS_PER_CAMPAIGN)
                    print(f"filled {size:,} records in {grow(store, size):.0f} s", flush=True)
                small, large = measure_reads([small_store, large_store], envs, scratch, args.repeats)
            print_reads(small, large)
            measure_submit(farm, args.repeats)
            if not args.quick:
                batch_size, samples = 8, 8
                statements = store_statements_per_rollout(farm, batch_size, samples)
                commands = redis_commands_per_rollout(farm, scratch, batch_size, samples)
                redis_rate = redis_capacity(broker_url)
                store_rate = store_capacity(url, batch_size, samples)
                print(f"\nbatches of {batch_size} tasks x {samples} samples:")
                print(f"store: {statements:.3f} SQL statements per rollout; capacity {store_rate:,.0f} rollouts/s")
                print(f"broker: {commands:.3f} Redis commands per rollout; capacity {redis_rate:,.0f} commands/s")
                print(f"projected ceiling: broker {redis_rate / commands:,.0f} rollouts/s, store {store_rate:,.0f}")
            print(f"load average after: {os.getloadavg()[0]:.1f}")
        finally:
            redis_server.stop(redis_pid)
            with admin.begin() as conn:
                for schema in schemas:
                    conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
