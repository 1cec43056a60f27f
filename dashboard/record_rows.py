"""The dataset browser's page, made in Python rather than by a Jinja2 template: its filter form, table rows and
pager, inside base.html's layout (`deps.frame`).

The browser's page is timed against its own store query (the Dashboard latency section of benchmarks/README.md),
and Jinja2's rendering of the form and pager alone cost about as much as all 50 rows written as f-strings. The
rows are tested against the template loop they replaced (tests/dashboard/test_record_rows.py), the page's
escaping of stored text and of the filters it echoes in tests/dashboard/test_pages.py.

The rows are the page's hot loop: 11 cells for each of up to 500 records. Through Jinja2 every cell is an
attribute lookup, a filter call and an escape in the template's generated code, and for a page of 50 rows that
cost more than the page's own query (see the Dashboard latency section of benchmarks/README.md). Here a row is
one f-string, and every string read from the store is HTML-escaped with the standard library's `html.escape`
(the same five characters as Jinja2's autoescaping, without a `Markup` object per cell). The escaping runs once
over all of a page's cells joined by a character no transformation touches, then split again: each of the 300
cells' escapes was a Python call of its own (five `str.replace` each), several times what the characters cost.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from html import escape
from urllib.parse import urlencode

from markupsafe import Markup

from verifarm.dashboard.text import visible
from verifarm.rollout.store import RecordSummary

# A private-use character: neither escaping nor making control characters visible nor the newline marks change
# it, so a joined page splits back into its cells. A cell that holds it itself is transformed on its own.
_JOINER = "\ue000"
_NEWLINE = " ⏎ "
_CUT = "…"


def _each(texts: list[str], transform: Callable[[str], str]) -> list[str]:
    """`transform` of each text: one call over all of them joined, where no text holds the joiner."""
    joined = _JOINER.join(texts)
    if joined.count(_JOINER) != len(texts) - 1:
        return [transform(text) for text in texts]
    return transform(joined).split(_JOINER)


def _preview(text: str) -> str:
    return escape(visible(text).replace("\n", _NEWLINE))


def record_rows(records: Sequence[RecordSummary], preview_chars: int) -> Markup:
    """The `<tr>` of each record for the browser's table, completions cut to `preview_chars` on one line (as
    `text.one_line` shows them: control characters written out, newlines as ⏎, … where cut)."""
    n = len(records)
    ids = [r.record_id for r in records]
    texts = _each(
        ids
        + [record_id[:8] for record_id in ids]
        + [r.campaign_id for r in records]
        + [r.env_id.replace("verifarm/", "") for r in records]
        + [r.outcome for r in records]
        + [r.verifier_version for r in records],
        escape,
    )
    previews = _each([r.completion_preview[:preview_chars] for r in records], _preview)
    columns = zip(records, *(texts[i * n : (i + 1) * n] for i in range(6)), previews)
    # Each row opens and closes with the whitespace the table around it expects (two-space indent). Numbers
    # are the record's validated int and float fields.
    return Markup(
        "".join(
            [
                f'\n  <tr data-record="{record_id}">\n'
                f'    <td class="num">{r.seq}</td>\n'
                f'    <td><a href="/records/{record_id}" class="record-link">{short_id}</a></td>\n'
                f"    <td>{campaign}</td><td>{env}</td>\n"
                f'    <td class="num">{r.task_index}</td><td class="num">{r.sample_index}</td>\n'
                f'    <td class="outcome outcome-{outcome}">{outcome}</td><td class="num">{r.reward:.2f}</td>\n'
                f"    <td>{'ref' if r.policy_version is None else f'v{r.policy_version}'}</td><td>{verifier}</td>\n"
                f'    <td class="text preview">{preview}{_CUT if len(r.completion_preview) > preview_chars else ""}</td>\n'
                f"  </tr>\n  "
                for r, record_id, short_id, campaign, env, outcome, verifier, preview in columns
            ]
        )
    )


@lru_cache(maxsize=256)
def menu_options(values: tuple[str, ...], selected: str | None) -> Markup:
    """A filter menu's `<option>`s (after its "any"), the one equal to `selected` selected. Cached by content: the
    campaign menu is read afresh on every page, and a page whose menu did not change reuses its markup."""
    return Markup(
        "".join(
            f'<option value="{value}"{" selected" if raw == selected else ""}>{value}</option>'
            for raw, value in zip(values, map(escape, values))
        )
    )


def _query_href(query: Mapping[str, object]) -> str:
    return escape(f"/records?{urlencode(query)}")


def records_content(
    records: Sequence[RecordSummary],
    preview_chars: int,
    filters: Mapping[str, str | None],
    menus: Mapping[str, Markup],
    before: int | None,
    older: int | None,
    searched_to: int | None,
) -> str:
    """The page's content: the filter form (`filters` as the query string gave them, each menu's options from
    `menu_options`), the table of `records`, how far a bounded search went, and the links to the newest and the
    next older page (the active filters kept)."""
    active = {name: value for name, value in filters.items() if value}
    if records:
        rows: str = record_rows(records, preview_chars)
    else:
        rows = "" if searched_to else '\n  <tr><td colspan="11" class="empty">No records match.</td></tr>\n  '
    searched = (
        f'<p class="searched" id="searched">Searched back to record #{searched_to:d}: '
        f'{"these are all that match" if records else "no records match"} so far, and "older" searches on.</p>'
        if searched_to
        else ""
    )
    newest = f'<a href="{_query_href(active)}" id="newest">newest</a>' if before else ""
    older_link = f'<a href="{_query_href({**active, "before": older})}" id="older">older →</a>' if older else ""
    return f"""
<h1>Dataset</h1>
<form method="get" action="/records" class="filters" id="filters">
  <label>campaign <select name="campaign"><option value="">any</option>
    {menus["campaign"]}
  </select></label>
  <label>env <select name="env"><option value="">any</option>
    {menus["env"]}
  </select></label>
  <label>outcome <select name="outcome"><option value="">any</option>
    {menus["outcome"]}
  </select></label>
  <label>policy version <input name="policy_version" size="4" value="{escape(filters["policy_version"] or "")}"></label>
  <label>verifier version <input name="verifier_version" size="6" value="{escape(filters["verifier_version"] or "")}"></label>
  <label>policy <select name="policy_name"><option value="">any</option>
    {menus["policy_name"]}
  </select></label>
  <button type="submit">filter</button>
</form>
<table id="records">
  <thead><tr><th class="num">#</th><th>record</th><th>campaign</th><th>env</th><th class="num">task</th>
    <th class="num">sample</th><th>outcome</th><th class="num">reward</th><th>policy</th><th>verifier</th>
    <th>completion</th></tr></thead>
  <tbody>
  {rows}
  </tbody>
</table>
{searched}
<p class="pager">
  {newest}
  {older_link}
</p>
"""
