"""The dataset browser's table rows as HTML, built in Python rather than in the Jinja2 template.

The rows are the page's hot loop: 11 cells for each of up to 500 records. Through Jinja2 every cell is an
attribute lookup, a filter call and an escape in the template's generated code, and for a page of 50 rows that
cost more than the page's own query (see the Dashboard latency section of benchmarks/README.md). Here a row is
one f-string: every string read from the store goes through the standard library's `html.escape` (the same five
characters as Jinja2's autoescaping, without building a `Markup` object per cell, which cost more than the
escaping itself), and numbers are formatted from the record's validated int and float fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from markupsafe import Markup

from verifarm.dashboard.text import one_line
from verifarm.rollout.store import RecordSummary


def _row(r: RecordSummary, preview_chars: int) -> str:
    record_id = escape(r.record_id)
    policy = "ref" if r.policy_version is None else f"v{r.policy_version:d}"
    # Each row opens and closes with the whitespace the template around it expects (two-space indent).
    return (
        f'\n  <tr data-record="{record_id}">\n'
        f'    <td class="num">{r.seq:d}</td>\n'
        f'    <td><a href="/records/{record_id}" class="record-link">{escape(r.record_id[:8])}</a></td>\n'
        f"    <td>{escape(r.campaign_id)}</td><td>{escape(r.env_id.replace('verifarm/', ''))}</td>\n"
        f'    <td class="num">{r.task_index:d}</td><td class="num">{r.sample_index:d}</td>\n'
        f'    <td class="outcome outcome-{escape(r.outcome)}">{escape(r.outcome)}</td>'
        f'<td class="num">{r.reward:.2f}</td>\n'
        f"    <td>{policy}</td><td>{escape(r.verifier_version)}</td>\n"
        f'    <td class="text preview">{escape(one_line(r.completion_preview, preview_chars))}</td>\n'
        f"  </tr>\n  "
    )


def record_rows(records: Iterable[RecordSummary], preview_chars: int) -> Markup:
    """The `<tr>` of each record for the browser's table, completions cut to `preview_chars` on one line."""
    return Markup("".join(_row(r, preview_chars) for r in records))
