"""The dashboard in a real headless Chromium against a real farm: a private Redis, a Celery worker process (with
its Prometheus exporter), a SQLite store, a campaign rolled out with the reference policy, a short real training
run, and `verifarm dashboard` started as users start it. Screenshots go under the test's temp dir (and, with
VERIFARM_SCREENSHOT_DIR set, there too: that is how docs/screenshots are refreshed)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from verifarm.rollout.app import create_app, queue_keys
from verifarm.rollout.campaign import parse_spec, status
from verifarm.rollout.config import FarmConfig
from verifarm.rollout.embedded_redis import EmbeddedRedis, free_port
from verifarm.rollout.store import RecordFilter, RolloutStore, record_id_for
from verifarm.rollout.submission import submit

from .conftest import HOSTILE_COMPLETION, hostile_record

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ENVS = [
    {"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 3},
    {"env_id": "verifarm/MathAnswer-v0"},
]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, logs: list[Path] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tails}")
        time.sleep(0.25)


@dataclass
class RunningFarm:
    home: Path
    redis_url: str
    store_url: str
    checkpoint_dir: Path
    worker_metrics_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
        env.update(
            {
                "VERIFARM_HOME": str(self.home),
                "VERIFARM_REDIS_URL": self.redis_url,
                "VERIFARM_DATABASE_URL": self.store_url,
                "VERIFARM_CHECKPOINT_DIR": str(self.checkpoint_dir),
                "VERIFARM_SANDBOX_BACKEND": "process",
                "VERIFARM_FARM_RECONCILE_INTERVAL_S": "3600",
            }
        )
        return env

    def config(self) -> FarmConfig:
        return FarmConfig(broker_url=self.redis_url, store_url=self.store_url, checkpoint_dir=self.checkpoint_dir)

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.home / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(
                [sys.executable, "-m", "verifarm.cli", *args],
                env={**self.env(), **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start_worker(self, name: str) -> subprocess.Popen:
        process = self.start(
            name,
            "workers",
            "start",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            extra_env={"VERIFARM_METRICS_WORKER_PORT": str(self.worker_metrics_port)},
        )
        app = create_app(self.config())
        wait_until(
            lambda: any(name in n for reply in app.control.ping(timeout=0.5) for n in reply),
            120,
            f"worker {name} to answer a ping",
            [self.home / f"{name}.log"],
        )
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def logs(self) -> list[Path]:
        return sorted(self.home.glob("*.log"))


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[RunningFarm]:
    home = tmp_path / "home"
    home.mkdir()
    broker = EmbeddedRedis(tmp_path / "broker")
    url, pid = broker.start()
    made = RunningFarm(home, url, f"sqlite:///{home / 'rollouts.db'}", home / "checkpoints", free_port())
    try:
        yield made
    finally:
        for process in made.processes:
            made.stop(process)
        broker.stop(pid)


def train_briefly(farm: RunningFarm) -> None:
    """A real policy and a short real training run, so the training and policy pages have data."""
    import torch

    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer
    from verifarm.trainer.config import EvalConfig, EvalSuite, TrainerConfig
    from verifarm.trainer.corpus import CorpusConfig
    from verifarm.trainer.daemon import ContinualTrainer
    from verifarm.trainer.schedule import ScheduleConfig

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    registry = CheckpointRegistry(farm.checkpoint_dir)
    registry.publish(build_model("tiny", len(tokenizer), seed=0), tokenizer, {"source": "test"})
    config = TrainerConfig(
        corpus=CorpusConfig(seed=0, arithmetic_max_digits=1, arithmetic_documents=200, heldout_fraction=0.2),
        schedule=ScheduleConfig(pretrain_steps=1, posttrain_steps=0),
        evaluation=EvalConfig(
            suites=(EvalSuite("verifarm/Addition-v0", (1, 2)),),
            tasks_per_difficulty=4,
            k=2,
            samples=2,
            max_new_tokens=12,
            heldout_loss_documents=8,
        ),
        batch_size=8,
        max_seq_len=48,
        publish_every=4,
        learning_rate=3e-3,
        warmup_steps=0,
    )
    with RolloutStore(farm.store_url) as store:
        trainer = ContinualTrainer(config, registry, store, farm.home / "trainer" / "state")
        trainer.run(max_steps=8)
        trainer.telemetry.close()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name, _, labels = name_labels.partition("{")
            pairs = frozenset(tuple(p.split("=", 1)) for p in labels.rstrip("}").replace('"', "").split(",") if p)
            samples[(name, pairs)] = float(value)
    return samples


def test_dashboard_in_a_browser_over_a_real_farm(farm: RunningFarm, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    worker = farm.start_worker("w1")
    spec = parse_spec(
        {
            "name": "arith",
            "envs": ENVS,
            "tasks": 16,
            "samples_per_task": 3,
            "batch_size": 4,
            "policy": "reference",
            "reference_corruption": 0.3,
        }
    )
    submit(spec, farm.config(), "arith-1")
    wait_until(lambda: status("arith-1", farm.store_url).state == "done", 180, "the campaign", farm.logs())

    # The worker's exporter sums its pool processes' counters: they equal the store's records.
    with RolloutStore(farm.store_url) as store:
        records = store.query(RecordFilter(campaign_id="arith-1"))
        metrics = scrape(farm.worker_metrics_port)
        for env in {r.env_id for r in records}:
            for outcome in ("pass", "fail"):
                counted = metrics.get(("verifarm_rollouts_total", frozenset({("env", env), ("outcome", outcome)})), 0)
                assert counted == sum(r.env_id == env and r.outcome == outcome for r in records)
        assert metrics[("verifarm_queue_depth", frozenset({("queue", "verifarm.rollouts")}))] == 0
        # A hostile completion, in a campaign of its own; and a campaign the worker will not get to in time.
        store.create_campaign("hostile-1", "hostile", {"policy": "reference"}, 1, 1, 5)
        store.add_records([hostile_record("hostile-1", 0)])
    farm.stop(worker)
    farm.processes.remove(worker)
    pending = parse_spec({**spec.model_dump(mode="json"), "name": "pending", "tasks": 40})
    submit(pending, farm.config(), "pending-1")
    train_briefly(farm)

    port = free_port()
    farm.start("dashboard", "dashboard", "--port", str(port), "--page-size", "10")
    base = f"http://127.0.0.1:{port}"

    def dashboard_answers() -> bool:
        try:
            return urllib.request.urlopen(base + "/", timeout=2).status == 200
        except OSError:
            return False

    wait_until(dashboard_answers, 60, "the dashboard", farm.logs())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        console_errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        page.on("dialog", lambda dialog: dialog.accept())

        # Campaigns -> a campaign -> its records -> a rollout, checking the numbers against the store.
        page.goto(base + "/")
        row = page.locator('tr[data-campaign="arith-1"]')
        st = status("arith-1", farm.store_url)
        expect(row.locator('[data-field="done"]')).to_have_text(str(st.done))
        expect(row.locator('[data-field="expected"]')).to_have_text(str(st.expected))
        expect(row.locator('[data-field="pass_rate"]')).to_have_text(f"{st.pass_rate:.1%}")
        expect(row.locator('[data-field="state"]')).to_have_text("done")
        page.screenshot(path=str(shots / "campaigns.png"), full_page=True)

        row.locator("a.campaign-link").click()
        expect(page.locator("#campaign-id")).to_have_text("arith-1")
        expect(page.locator("#done")).to_have_text(str(st.done))
        expect(page.locator("#passed")).to_have_text(str(st.passed))
        expect(page.locator("#failed")).to_have_text(str(st.failed))
        page.screenshot(path=str(shots / "campaign.png"), full_page=True)

        page.locator("#browse-records").click()
        rows = page.locator("#records tbody tr")
        expect(rows).to_have_count(10)
        newest = sorted(records, key=lambda r: r.seq, reverse=True)
        assert [int(t) for t in rows.locator("td:first-child").all_inner_texts()] == [r.seq for r in newest[:10]]
        page.screenshot(path=str(shots / "records.png"), full_page=True)
        page.locator("#older").click()
        assert [int(t) for t in rows.locator("td:first-child").all_inner_texts()] == [r.seq for r in newest[10:20]]

        target = newest[12]
        page.locator(f'tr[data-record="{target.record_id}"] a.record-link').click()
        expect(page.locator("#record-id")).to_have_text(target.record_id)
        expect(page.locator("#outcome")).to_have_text(target.outcome)
        expect(page.locator("#reward")).to_have_text(f"{target.reward:.4f}")
        assert page.locator("#completion").inner_text() == target.completion
        assert page.locator("#prompt").inner_text() == target.prompt
        page.screenshot(path=str(shots / "rollout.png"), full_page=True)

        # The hostile completion: shown as text, not run, cut short, downloadable whole.
        page.goto(f"{base}/records/{record_id_for('hostile-1', 0, 0)}")
        shown = page.locator("#completion").inner_text()
        assert shown.startswith('<script>window.__pwned = 1; document.title = "pwned"</script><img src=x')
        assert "\\x1b[31mred\\x1b[0m" in shown and "THE-END" not in shown and len(shown) < 30_000
        assert page.evaluate("window.__pwned") is None and page.title() != "pwned"
        assert page.locator("#completion script, #completion img, #completion b").count() == 0
        expect(page.locator("#completion-size")).to_contain_text(f"of {len(HOSTILE_COMPLETION)} characters")
        with page.expect_download() as download:
            page.locator("#download-completion").click()
        saved = tmp_path / "completion.txt"
        download.value.save_as(saved)
        assert saved.read_text(encoding="utf-8") == HOSTILE_COMPLETION
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "hostile.png"))

        # Live progress: records stored while the page is open show up without a reload.
        with RolloutStore(farm.store_url) as store:
            store.create_campaign("live-1", "live", {"policy": "reference"}, 4, 1, 5)
        page.goto(base + "/")
        live_row = page.locator('tr[data-campaign="live-1"]')
        expect(live_row.locator('[data-field="done"]')).to_have_text("0")
        with RolloutStore(farm.store_url) as store:
            store.add_records([hostile_record("live-1", 0), hostile_record("live-1", 1)])
        expect(live_row.locator('[data-field="done"]')).to_have_text("2", timeout=20_000)
        expect(live_row.locator('[data-field="pass_rate"]')).to_have_text("0.0%")

        # Cancel from the page: the row turns cancelled, the store says so, and no worker rolls it out.
        pending_row = page.locator('tr[data-campaign="pending-1"]')
        expect(pending_row.locator('[data-field="state"]')).to_have_text("running")
        pending_row.locator("button.cancel").click()
        expect(pending_row.locator('[data-field="state"]')).to_have_text("cancelled")
        assert status("pending-1", farm.store_url).state == "cancelled"
        page.reload()
        expect(page.locator('tr[data-campaign="pending-1"] [data-field="state"]')).to_have_text("cancelled")

        # Training curves and versions: the numbers the trainer stored.
        from verifarm.policy.registry import CheckpointRegistry

        with RolloutStore(farm.store_url) as store:
            evaluations = {e.policy_version: e.metrics for e in store.metrics()}
        page.goto(base + "/training")
        assert page.locator("svg.chart").count() == 7 and page.locator("svg polyline").count() >= 3
        for version, metrics in evaluations.items():
            cells = page.locator("#evaluations tr", has_text=f"v{version}").locator("td")
            expect(cells.nth(2)).to_have_text(f"{metrics['heldout_loss']:,.4f}")
        page.screenshot(path=str(shots / "training.png"), full_page=True)
        page.goto(base + "/policies")
        for info in CheckpointRegistry(farm.checkpoint_dir).versions():
            version_row = page.locator(f'#policies tr[data-version="{info.version}"]')
            expect(version_row.locator("code")).to_have_text(info.checksum[:16])
            expect(version_row).to_contain_text("verified")
        page.screenshot(path=str(shots / "policies.png"), full_page=True)

        farm.start_worker("w2")
        page.goto(base + "/workers")
        expect(page.locator("#workers")).to_contain_text("w2@")
        page.screenshot(path=str(shots / "workers.png"), full_page=True)
        assert not console_errors, console_errors  # e.g. a script blocked by the content security policy
        browser.close()

    # The cancelled campaign's batches are consumed and skipped: nothing was stored for it.
    client = redis.Redis.from_url(farm.redis_url)
    wait_until(lambda: sum(client.llen(k) for k in queue_keys()) == 0, 120, "the queue to drain", farm.logs())
    with RolloutStore(farm.store_url) as store:
        assert store.count(RecordFilter(campaign_id="pending-1")) == 0
    copy_to = os.environ.get("VERIFARM_SCREENSHOT_DIR")
    if copy_to:
        shutil.copytree(shots, copy_to, dirs_exist_ok=True)
