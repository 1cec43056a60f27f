"""Dashboard latency: the dataset browser's pages over HTTP vs the same query through the store's Python API.

Two SQLite stores are filled with synthetic records by bulk inserts (executemany on the store's own table, one
transaction per 50,000 rows): 10,000 and 1,000,000 records over 20 campaigns, 3 envs and 10 policy versions.
For each store `verifarm dashboard` runs as its own process (as users run it) and this script times, interleaved
in the same run so that load on the machine hits both alike:

  page    GET /records?... over one keep-alive HTTP connection (query, campaign list, template, HTTP)
  direct  RolloutStore.newest_window(...), the store call the page makes, with the page's filter, cursor, limit,
          preview length and scan window, in this process

for three pages: the first page (no filter), a filtered page (one campaign's failures) and a page deep in the
store (cursor at the middle seq). Both stores are measured in the same loop (one dashboard process each). Targets:
page p95 <= 2x direct p95, and the 1,000,000-record page p95 <= 1.5x the 10,000-record page p95 (a page must not
grow with the store).

Wall-clock times on a busy machine also hold the time a process spent runnable but waiting for a CPU, which a page
(two processes, each woken per request) pays more often than a call in this process. On Linux the script also
reads each call's CPU time (the dashboard process's from /proc/<pid>/task/*/schedstat, this thread's) and the
dashboard's run-queue wait, and prints their means: what a page costs, apart from what the machine's load adds.

    python benchmarks/dashboard_latency.py                    # 10k and 1M (the 1M store takes ~2 min to fill)
    python benchmarks/dashboard_latency.py --sizes 10000 --repeats 50
    python benchmarks/dashboard_latency.py --store-dir /tmp/vf-dash-bench   # keep (and reuse) the filled stores
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

from verifarm.dashboard.config import DashboardConfig
from verifarm.rollout.embedded_redis import free_port
from verifarm.rollout.store import RecordFilter, RolloutStore, record_id_for

ENVS = ("verifarm/Addition-v0", "verifarm/Arithmetic-v0", "verifarm/MathAnswer-v0")
CAMPAIGNS = 20
PAGE_SIZE = 50
PREVIEW_CHARS = DashboardConfig.model_fields["preview_chars"].default  # what the dashboard cuts text to
SCAN_WINDOW = DashboardConfig.model_fields["scan_window"].default  # the records a page examines at most
CHUNK = 50_000


def fill(url: str, size: int) -> None:
    """`size` records: campaign c holds records c, c+20, ...; outcomes 60% pass, 35% fail, 5% infra_error."""
    with RolloutStore(url) as store:
        if store.count() == size:
            return
        if store.count():
            raise SystemExit(f"{url} holds {store.count()} records, not {size}: remove it first")
        columns = [c.name for c in store.records.c if c.name != "seq"]
        sql = f"INSERT INTO rollout_records ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        start = datetime(2026, 12, 1, tzinfo=timezone.utc)
        campaigns = [f"bench-{c:02d}" for c in range(CAMPAIGNS)]
        for c in campaigns:
            store.create_campaign(c, c, {"policy": "reference"}, size // CAMPAIGNS, 1, 5)
        raw = store.engine.raw_connection()
        try:
            for first in range(0, size, CHUNK):
                rows = []
                for i in range(first, min(first + CHUNK, size)):
                    campaign, task = campaigns[i % CAMPAIGNS], i // CAMPAIGNS
                    roll = (i * 7919) % 100
                    outcome = "pass" if roll < 60 else "fail" if roll < 95 else "infra_error"
                    env = ENVS[(i // 7) % 3]
                    values = {
                        "record_id": record_id_for(campaign, task, 0),
                        "campaign_id": campaign,
                        "env_id": env,
                        "env_version": "v0",
                        "task_index": task,
                        "task_seed": i,
                        "task_id": f"t{i}",
                        "difficulty": 1 + i % 4,
                        "group_id": f"{campaign}/{task}",
                        "group_size": 1,
                        "sample_index": 0,
                        "prompt": f"What is {i} + {i + 1}?\n",
                        "completion": f"{i} + {i + 1} = {2 * i + 1}\nAnswer: {2 * i + 1 + (outcome != 'pass')}\n",
                        "reward": float(outcome == "pass"),
                        "passed": int(outcome == "pass"),
                        "reason": "ok" if outcome == "pass" else "wrong answer",
                        "outcome": outcome,
                        "policy_version": 1 + i % 10,
                        "policy_name": "checkpoint",
                        "verifier_version": "1",
                        "sandbox_backend": None,
                        "drafted": None,
                        "sample_seconds": 0.01,
                        "verify_seconds": 0.001,
                        "content_hash": f"{i:064x}",
                        "token_ids": None,
                        "logprobs": None,
                        "details": "{}",
                        "created_at": (start + timedelta(milliseconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                    }
                    rows.append(tuple(values[name] for name in columns))
                raw.cursor().executemany(sql, rows)
                raw.commit()
        finally:
            raw.close()


def scheduled(pid: int | None = None) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of all threads of the dashboard process `pid`, or
    (CPU seconds, 0) of the calling thread; None where the kernel keeps no schedstat. The dashboard sleeps between
    requests, so its counters are up to date when read; a running thread's are not, hence `thread_time` for it."""
    if pid is None:
        return time.thread_time(), 0.0
    try:
        fields = [path.read_text().split() for path in Path(f"/proc/{pid}/task").glob("*/schedstat")]
    except OSError:
        return None
    if not fields:
        return None
    return sum(int(f[0]) for f in fields) / 1e9, sum(int(f[1]) for f in fields) / 1e9


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Dashboard:
    """`verifarm dashboard` on one store, in its own process, and a keep-alive connection to it."""

    def __init__(self, url: str) -> None:
        self.port = free_port()
        env = {**os.environ, "VERIFARM_DATABASE_URL": url, "VERIFARM_HOME": tempfile.mkdtemp(prefix="vf-dash-")}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "verifarm.cli",
                "dashboard",
                "--port",
                str(self.port),
                "--page-size",
                str(PAGE_SIZE),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.get("/records")
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the dashboard did not start") from None
                time.sleep(0.2)

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path)
        reply = self.connection.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise SystemExit(f"GET {path}: {reply.status}")
        return body

    def close(self) -> None:
        self.connection.close()
        self.process.terminate()
        self.process.wait(30)


Timings = dict[int, dict[str, dict[str, list[float]]]]


def fetch_page(dashboard: Dashboard, path: str) -> None:
    body = dashboard.get(path)
    assert body.count(b'class="record-link"') == PAGE_SIZE, path


def query_direct(store: RolloutStore, flt: RecordFilter, before: int | None) -> None:
    """The store call the page makes, with the page's arguments: what the page costs beyond it is the web layer."""
    window = store.newest_window(
        flt, before_seq=before, limit=PAGE_SIZE + 1, preview_chars=PREVIEW_CHARS + 1, window=SCAN_WINDOW
    )
    assert len(window.records) == PAGE_SIZE + 1


def measure(urls: dict[int, str], repeats: int) -> tuple[Timings, Timings, Timings]:
    """Every (store size, page, side) timed in one loop, alternating which goes first, so that the load of a
    shared machine falls on all of them alike. Returns wall-clock seconds of each call, and the CPU seconds and
    run-queue seconds of each call (dashboard process plus this thread; empty where not available)."""
    dashboards = {size: Dashboard(url) for size, url in urls.items()}
    stores = {size: RolloutStore(url) for size, url in urls.items()}
    try:
        cases = {}
        for size, store in stores.items():
            middle = (store.latest_seq() or 0) // 2
            cases[size] = {
                "first page": (RecordFilter(), None),
                "filtered page": (RecordFilter(campaign_id="bench-07", outcome="fail"), None),
                "deep page": (RecordFilter(), middle),
            }
        timings, cpu, waits = (
            {size: {name: {"page": [], "direct": []} for name in cases[size]} for size in urls} for _ in range(3)
        )
        for round_index in range(repeats + 3):  # the first 3 rounds warm caches and are dropped
            sizes = list(urls) if round_index % 2 else list(urls)[::-1]
            for name in ("first page", "filtered page", "deep page"):
                for size in sizes:
                    flt, before = cases[size][name]
                    params = {
                        k: v
                        for k, v in (("campaign", flt.campaign_id), ("outcome", flt.outcome), ("before", before))
                        if v is not None
                    }
                    path = "/records" + ("?" + urllib.parse.urlencode(params) if params else "")

                    order = (
                        ("page", functools.partial(fetch_page, dashboards[size], path)),
                        ("direct", functools.partial(query_direct, stores[size], flt, before)),
                    )
                    server = dashboards[size].process.pid
                    for side, call in order if round_index % 2 else order[::-1]:
                        used_before = scheduled(server), scheduled()
                        started = time.perf_counter()
                        call()
                        elapsed = time.perf_counter() - started
                        used_after = scheduled(server), scheduled()
                        if round_index < 3:
                            continue
                        timings[size][name][side].append(elapsed)
                        if None not in used_before + used_after:
                            for index, into in ((0, cpu), (1, waits)):
                                into[size][name][side].append(
                                    sum(a[index] - b[index] for a, b in zip(used_after, used_before))
                                )
        return timings, cpu, waits
    finally:
        for dashboard in dashboards.values():
            dashboard.close()
        for store in stores.values():
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--store-dir", type=Path, default=None, help="where the filled stores live (kept)")
    args = parser.parse_args()
    folder = args.store_dir or Path(tempfile.mkdtemp(prefix="vf-dash-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    urls = {}
    for size in args.sizes:
        urls[size] = f"sqlite:///{folder / f'records-{size}.db'}"
        started = time.perf_counter()
        fill(urls[size], size)
        print(f"{size:>9,} records ready in {time.perf_counter() - started:.1f} s ({urls[size]})", flush=True)
    results, cpu, waits = measure(urls, args.repeats)
    print(
        f"\n{'store':>10} {'query':<14} {'page p50':>9} {'page p95':>9} {'direct p50':>10} {'direct p95':>10} "
        f"{'p95 ratio':>9}"
    )
    for size, cases in results.items():
        for name, sides in cases.items():
            page, direct = sides["page"], sides["direct"]
            print(
                f"{size:>10,} {name:<14} {1e3 * statistics.median(page):8.2f}ms {1e3 * percentile(page, 0.95):8.2f}ms "
                f"{1e3 * statistics.median(direct):9.2f}ms {1e3 * percentile(direct, 0.95):9.2f}ms "
                f"{percentile(page, 0.95) / percentile(direct, 0.95):8.2f}x"
            )
    if all(cpu[size][name]["page"] for size in cpu for name in cpu[size]):
        print(
            f"\nmean per call (CPU: dashboard process + this thread; wait: the dashboard's for a CPU):\n"
            f"{'store':>10} {'query':<14} {'page':>9} {'page CPU':>9} {'direct CPU':>10} {'CPU ratio':>9} "
            f"{'page wait':>9}"
        )
        for size, cases in cpu.items():
            for name, sides in cases.items():
                page, direct = statistics.mean(sides["page"]), statistics.mean(sides["direct"])
                wall = statistics.mean(results[size][name]["page"])
                page_wait = statistics.mean(waits[size][name]["page"])
                print(
                    f"{size:>10,} {name:<14} {1e3 * wall:7.2f}ms {1e3 * page:7.2f}ms {1e3 * direct:8.2f}ms "
                    f"{page / direct:8.2f}x {1e3 * page_wait:7.2f}ms"
                )
    if len(results) >= 2:
        small, large = min(results), max(results)
        print()
        for name in results[small]:
            growth = percentile(results[large][name]["page"], 0.95) / percentile(results[small][name]["page"], 0.95)
            print(f"page p95 {large:,} vs {small:,} records, {name}: {growth:.2f}x (target <= 1.5x)")
    print(
        json.dumps(
            {
                str(size): {
                    name: {side: [round(1e3 * percentile(v, q), 3) for q in (0.5, 0.95)] for side, v in sides.items()}
                    for name, sides in cases.items()
                }
                for size, cases in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
