"""Every dashboard page against a real store (FastAPI's TestClient, no browser): numbers equal the store's,
rollout text is inert and bounded, pagination walks everything, nothing secret is shown, cancel is guarded."""

from __future__ import annotations

import html
import re
from pathlib import Path

from fastapi.testclient import TestClient

from verifarm.dashboard.app import SECURITY_HEADERS, create_app
from verifarm.dashboard.config import DashboardConfig
from verifarm.redaction import redact_url
from verifarm.rollout.campaign import status
from verifarm.rollout.store import RecordFilter, RolloutStore, record_id_for

from .conftest import HOSTILE_HEAD


def client_for(store_url: str, tmp_path: Path, **overrides) -> TestClient:
    values = {"checkpoint_dir": tmp_path / "checkpoints", "tensorboard_dir": tmp_path / "tensorboard", **overrides}
    config = DashboardConfig(store_url=store_url, **values)
    return TestClient(create_app(config))


def cell_texts(page: str, table_id: str) -> list[list[str]]:
    body = page.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in row] for row in cells if row]


def test_campaign_pages_show_the_stores_numbers(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path)
    listing = client.get("/")
    assert listing.status_code == 200
    rows = {row[0]: row for row in cell_texts(listing.text, "campaigns")}
    for campaign_id in ("alpha", "beta"):
        st = status(campaign_id, filled_store_url)
        assert rows[campaign_id][3] == f"{st.done} / {st.expected}"
        assert rows[campaign_id][4] == f"{st.pass_rate:.1%}"
    live = {c["campaign_id"]: c for c in client.get("/api/campaigns").json()}
    assert live["alpha"]["done"] == 36 and live["alpha"]["state"] == "done"

    page = client.get("/campaigns/alpha").text
    with RolloutStore(filled_store_url) as store:
        records = store.query(RecordFilter(campaign_id="alpha"))
    by_env = cell_texts(page, "by-env")
    assert sum(int(row[2]) for row in by_env) == len(records) == 36
    for env, difficulty, count, passed, failed, _infra, _ in by_env:
        group = [r for r in records if r.env_id == env and r.difficulty == int(difficulty)]
        assert (int(count), int(passed), int(failed)) == (
            len(group),
            sum(r.outcome == "pass" for r in group),
            sum(r.outcome == "fail" for r in group),
        )
    reasons = cell_texts(page, "reasons")
    assert sum(int(row[2]) for row in reasons) <= sum(r.outcome != "pass" for r in records)
    assert page.count("<svg") == 3
    assert client.get("/campaigns/nope").status_code == 404


def test_the_browser_pages_through_every_record_newest_first_with_filters(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path, page_size=7)
    with RolloutStore(filled_store_url) as store:
        everything = store.query()
        fails = store.query(RecordFilter(campaign_id="alpha", outcome="fail"))
    seen, url = [], "/records"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += [int(row[0]) for row in cell_texts(page.text, "records")]
        older = re.search(r'href="([^"]+)" id="older"', page.text)
        url = html.unescape(older.group(1)) if older else None
    assert seen == [r.seq for r in reversed(everything)]

    page = client.get("/records", params={"campaign": "alpha", "outcome": "fail"}).text
    shown = [int(row[0]) for row in cell_texts(page, "records")]
    assert shown == [r.seq for r in reversed(fails)][:7] and fails
    older = re.search(r'href="([^"]+)" id="older"', page)
    assert (older is not None) == (len(fails) > 7)
    if older:
        assert "campaign=alpha" in older.group(1) and "outcome=fail" in older.group(1)

    bad = client.get("/records", params={"outcome": "maybe"})
    assert bad.status_code == 400 and "outcome must be one of" in bad.text
    assert client.get("/records", params={"policy_version": "x"}).status_code == 400


def test_a_rare_filter_searches_a_bounded_window_per_page_and_pages_on(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path, page_size=3, scan_window=5)
    with RolloutStore(filled_store_url) as store:
        fails = [r.seq for r in reversed(store.query(RecordFilter(outcome="fail")))]
    seen, searched, url = [], [], "/records?outcome=fail"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        shown = [int(row[0]) for row in cell_texts(page.text, "records") if row[0].isdigit()]
        assert len(shown) <= 3 and (not shown or shown[0] - shown[-1] < 5)
        mark = re.search(r'id="searched">Searched back to record #(\d+)', page.text)
        if mark:
            searched.append(int(mark.group(1)))
            assert all(seq >= searched[-1] for seq in shown)
            assert "No records match" not in page.text
        seen += shown
        older = re.search(r'href="([^"]+)" id="older"', page.text)
        url = html.unescape(older.group(1)) if older else None
        if url:
            assert "outcome=fail" in url
    assert seen == fails and fails
    assert searched and searched == sorted(searched, reverse=True)


def test_hostile_completion_is_inert_truncated_and_downloadable(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path)
    record_id = record_id_for("beta", 1000, 0)
    page = client.get(f"/records/{record_id}")
    assert page.status_code == 200
    text = page.text
    assert "<script>window.__pwned" not in text and "<img src=x" not in text and "<b>bold?</b>" not in text
    assert "&lt;script&gt;window.__pwned = 1;" in text and "&lt;img src=x onerror=" in text
    assert "\x1b" not in text and "\\x1b[31mred\\x1b[0m" in text and "\\u202eevil" in text
    assert "&lt;i&gt;no answer&lt;/i&gt;" in text and "&lt;script&gt;x()&lt;/script&gt;" in text
    assert len(text) < 200_000 and "THE-END" not in text
    assert f"Showing 20000 of {len(HOSTILE_HEAD) + (3 << 20) + 7} characters" in text
    assert "default-src 'self'; script-src 'self'" in page.headers["content-security-policy"]
    whole = client.get(f"/records/{record_id}/completion.txt")
    assert (
        whole.headers["content-type"].startswith("text/plain") and "attachment" in whole.headers["content-disposition"]
    )
    assert whole.text.startswith(HOSTILE_HEAD) and whole.text.endswith("THE-END")
    listing = client.get("/records", params={"campaign": "beta"}).text
    assert "<script>window" not in listing and "&lt;script&gt;window.__pwned" in listing
    assert client.get("/records/not-a-record").status_code == 404
    assert client.get(f"/records/{record_id}/secrets.txt").status_code == 404


def test_cancel_needs_the_pages_header_and_cancels(filled_store_url, tmp_path):
    with RolloutStore(filled_store_url) as store:
        store.create_campaign("gamma", "gamma", {"policy": "reference"}, 10, 2, 5)
    client = client_for(filled_store_url, tmp_path)
    assert client.post("/campaigns/gamma/cancel").status_code == 403
    assert (
        client.post(
            "/campaigns/gamma/cancel", headers={"X-Verifarm-Action": "cancel", "Origin": "http://evil.example"}
        ).status_code
        == 403
    )
    assert status("gamma", filled_store_url).state == "running"
    reply = client.post("/campaigns/gamma/cancel", headers={"X-Verifarm-Action": "cancel"})
    assert reply.status_code == 200 and reply.json()["state"] == "cancelled"
    assert status("gamma", filled_store_url).state == "cancelled"
    assert client.post("/campaigns/nope/cancel", headers={"X-Verifarm-Action": "cancel"}).status_code == 404
    assert client.put("/campaigns/gamma").status_code == 405  # nothing else writes


def test_no_page_shows_a_password(postgres_url, tmp_path):
    secret = "hunter2-do-not-show"
    # Trust authentication ignores the password, so the store opens; the broker refuses it, which the
    # workers page must report without echoing the URL.
    store_url = postgres_url.replace("postgres@", f"postgres:{secret}@")
    with RolloutStore(store_url) as store:
        from .conftest import fill

        fill(store, "alpha", tasks=4)
    client = client_for(
        store_url, tmp_path, broker_url=f"redis://:{secret}@127.0.0.1:6379/0", flower_url="http://127.0.0.1:9"
    )
    record_id = record_id_for("alpha", 0, 0)
    for path in (
        "/",
        "/campaigns/alpha",
        "/records",
        f"/records/{record_id}",
        "/training",
        "/policies",
        "/workers",
        "/metrics",
        "/api/campaigns",
        "/campaigns/missing",
    ):
        reply = client.get(path)
        assert secret not in reply.text, path
    assert "postgres:***@127.0.0.1" in client.get("/").text
    assert redact_url("redis://user:pw@host:6379/0?token=abc") == "redis://user:***@host:6379/0?token=***"
    assert redact_url("sqlite:////var/lib/verifarm/rollouts.db") == "sqlite:////var/lib/verifarm/rollouts.db"
    assert redact_url("redis://:only-a-password@h:6379/0") == "redis://:***@h:6379/0"


def test_the_dashboard_command_refuses_a_busy_port_or_a_missing_store_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from verifarm.policy.asgi import bind_socket

    env = {**os.environ, "VERIFARM_HOME": str(tmp_path), "VERIFARM_REDIS_URL": "redis://127.0.0.1:6379/0"}
    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "verifarm.cli", "dashboard", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: 127.0.0.1:{port} is already in use; pick another with --port (or --host)"
    env["VERIFARM_HOME"] = str(tmp_path / "no" / "such" / "home")
    done = subprocess.run(
        [sys.executable, "-m", "verifarm.cli", "dashboard", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: cannot open the store at sqlite:///{tmp_path}/no/such/home/rollouts.db")


def test_a_bad_cursor_is_a_400_page(filled_store_url, tmp_path):
    reply = client_for(filled_store_url, tmp_path).get("/records", params={"before": "-3"})
    assert reply.status_code == 400 and "before" in reply.text and "<html" in reply.text


def test_the_filters_a_page_echoes_are_inert(filled_store_url, tmp_path):
    # The form shows the query's own values again, and the pager's links carry them: markup in them stays text.
    hostile = '"><script>window.__pwned = 3</script>'
    page = client_for(filled_store_url, tmp_path, page_size=2).get(
        "/records", params={"verifier_version": hostile, "campaign": hostile, "before": "1000000"}
    )
    assert page.status_code == 200 and "<script>window.__pwned" not in page.text
    assert f'name="verifier_version" size="6" value="{html.escape(hostile)}"' in page.text
    newest = re.search(r'href="([^"]+)" id="newest"', page.text)
    assert newest and "script" in html.unescape(newest.group(1)) and "<" not in newest.group(1)


def test_the_filter_menu_lists_a_campaign_created_a_moment_ago(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path)
    menu = re.compile(r'<option value="([^"]*)"')
    assert "fresh-campaign" not in menu.findall(client.get("/records").text)
    with RolloutStore(filled_store_url) as store:
        store.create_campaign("fresh-campaign", "fresh", {"policy": "reference"}, 1, 1, 5)
        assert store.campaign_ids() == [row.campaign_id for row in store.list_campaigns()]
    assert "fresh-campaign" in menu.findall(client.get("/records").text)


def test_training_curves_are_read_from_the_trainers_event_files(filled_store_url, tmp_path):
    from collections import Counter

    from verifarm.trainer.daemon import StepReport
    from verifarm.trainer.metrics import TelemetrySettings, TrainerTelemetry

    telemetry = TrainerTelemetry(tmp_path / "trainer" / "state", TelemetrySettings())
    client = client_for(filled_store_url, tmp_path, tensorboard_dir=tmp_path / "trainer" / "tensorboard")
    assert "No TensorBoard event files" in client.get("/training").text
    for step, loss in enumerate([3.0, 2.5, 2.0]):
        telemetry.on_step(StepReport(step, "pretrain", loss, 8, 0.1, {"tokens": 64.0}), Counter(pretrain=step + 1), 1)
    telemetry.flush()
    page = client.get("/training").text
    loss_chart = page.split("training loss by mode</title>", 1)[1].split("</svg>", 1)[0]
    assert loss_chart.count("<circle") == 3 and ">pretrain</text>" in loss_chart
    telemetry.on_step(StepReport(3, "pretrain", 1.5, 8, 0.1, {"tokens": 64.0}), Counter(pretrain=4), 1)
    telemetry.flush()
    loss_chart = client.get("/training").text.split("training loss by mode</title>", 1)[1].split("</svg>", 1)[0]
    assert loss_chart.count("<circle") == 4  # a changed event file is read again
    telemetry.close()


def test_the_listing_marks_exactly_the_previews_it_cut(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path, preview_chars=40)
    rows = cell_texts(client.get("/records", params={"campaign": "beta"}).text, "records")
    with RolloutStore(filled_store_url) as store:
        completions = {r.seq: r.completion for r in store.iter_records(RecordFilter(campaign_id="beta"))}
    assert len(rows) == len(completions) and any(len(c) > 40 for c in completions.values())
    assert any(len(c) <= 40 for c in completions.values())
    for row in rows:
        completion, preview = completions[int(row[0])], row[-1]
        assert preview.endswith("…") == (len(completion) > 40), (completion[:60], preview)


def test_the_listing_served_ahead_of_fastapi_carries_every_pages_security_headers(filled_store_url, tmp_path):
    client = client_for(filled_store_url, tmp_path)
    head = client.head("/records")
    for reply, expected in (
        (client.get("/records"), 200),
        (client.get("/records", params={"outcome": "won"}), 400),  # handed to the full app, its error page
        (head, 200),
        (client.get("/"), 200),  # the campaigns page, through FastAPI's stack, for comparison
    ):
        assert reply.status_code == expected
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers[name] == value, (reply.request.url, name)
    assert head.content == b""
    assert client.post("/records").status_code == 405
