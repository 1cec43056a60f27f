"""The dataset browser's rows, written in Python: the cells the template loop showed, every stored string inert."""

from __future__ import annotations

import html
import re
from datetime import datetime, timezone

import jinja2

from verifarm.dashboard.record_rows import record_rows
from verifarm.dashboard.text import one_line
from verifarm.rollout.store import RecordSummary

HOSTILE = '<script>alert("x")</script>\'&\x1b[31m'

# The template loop that record_rows replaced, kept here as the reference for what each cell shows.
TEMPLATE_LOOP = """{% for r in records %}
  <tr data-record="{{ r.record_id }}">
    <td class="num">{{ r.seq }}</td>
    <td><a href="/records/{{ r.record_id }}" class="record-link">{{ r.record_id[:8] }}</a></td>
    <td>{{ r.campaign_id }}</td><td>{{ r.env_id | replace("verifarm/", "") }}</td>
    <td class="num">{{ r.task_index }}</td><td class="num">{{ r.sample_index }}</td>
    <td class="outcome outcome-{{ r.outcome }}">{{ r.outcome }}</td><td class="num">{{ "%.2f" | format(r.reward) }}</td>
    <td>{{ "ref" if r.policy_version is none else "v%d" | format(r.policy_version) }}</td>
    {#- #}<td>{{ r.verifier_version }}</td>
    <td class="text preview">{{ r.completion_preview | one_line(preview_chars) }}</td>
  </tr>
  {% endfor %}"""


def summary(seq: int, text: str, policy_version: int | None, reward: float) -> RecordSummary:
    return RecordSummary(
        seq=seq,
        record_id=f"{text}-{seq}",
        campaign_id=f"c{text}",
        env_id=f"verifarm/{text}",
        task_index=seq * 3,
        sample_index=seq % 2,
        difficulty=1,
        outcome="fail",
        reward=reward,
        reason="r",
        policy_version=policy_version,
        policy_name="checkpoint",
        verifier_version=text,
        created_at=datetime(2026, 12, 1, tzinfo=timezone.utc),
        prompt_preview="p",
        completion_preview=f"line one\n{text}" + "A" * 300,
    )


def cells(markup: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", markup, re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in rows
    ]


def attributes(markup: str) -> list[str]:
    return [html.unescape(value) for value in re.findall(r'(?:data-record|href|class)="([^"]*)"', markup)]


def test_rows_show_what_the_template_loop_showed():
    records = [summary(7, "plain", 3, 1.0), summary(6, HOSTILE, None, 0.125), summary(5, "ünïcode ⏎", 12, -0.0)]
    env = jinja2.Environment(autoescape=True)
    env.filters["one_line"] = one_line
    reference = env.from_string(TEMPLATE_LOOP).render(records=records, preview_chars=40)
    rows = record_rows(records, preview_chars=40)
    assert cells(rows) == cells(reference) and attributes(rows) == attributes(reference)
    assert cells(rows)[1][:2] == ["6", HOSTILE[:8]] and cells(rows)[1][8] == "ref" and cells(rows)[0][8] == "v3"


def test_a_cell_holding_the_joiner_of_a_pages_cells_is_shown_as_it_is():
    # The cells of a page are escaped joined by U+E000; a stored string holding that character itself must not
    # shift the other cells.
    records = [summary(3, "a\ue000b<", 1, 0.5), summary(2, HOSTILE, 2, 1.0)]
    env = jinja2.Environment(autoescape=True)
    env.filters["one_line"] = one_line
    reference = env.from_string(TEMPLATE_LOOP).render(records=records, preview_chars=40)
    rows = record_rows(records, preview_chars=40)
    assert cells(rows) == cells(reference) and attributes(rows) == attributes(reference)
    assert cells(rows)[0][2] == "ca\ue000b<"


def test_every_stored_string_is_inert():
    rows = str(record_rows([summary(1, HOSTILE, 1, 0.0)], preview_chars=200))
    assert "<script>" not in rows and "'" not in rows and '("x")' not in rows
    assert rows.count("&lt;script&gt;") == 7  # record id (3 times), campaign, env, verifier, completion
    preview = rows.split('class="text preview">', 1)[1]
    assert "\x1b" not in preview and "\\x1b[31m" in preview  # the completion's escape is shown, not sent to a terminal
    assert "…" in rows and "A" * 200 not in rows  # the completion is cut to the preview


def test_no_records_no_rows():
    assert record_rows([], preview_chars=100) == ""
