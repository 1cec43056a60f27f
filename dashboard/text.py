"""Rollout text as the dashboard shows it: inert and bounded.

Completions are written by a policy (or an adversary) and may hold HTML, scripts, terminal escapes or megabytes.
Jinja2's autoescaping makes markup inert; this module makes control characters visible (an ANSI escape shows as
`\\x1b[31m`, not as colour or as an invisible byte) and cuts the text to a size a page can hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidirectional overrides that can make
# text read differently from what it is.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True)
class ShownText:
    text: str  # what the page shows (still to be HTML-escaped by the template)
    total_chars: int
    truncated: bool


def visible(text: str) -> str:
    """`text` with control characters written out as escapes (each character on its own: a page's texts may be
    joined, made visible at once and split again)."""
    return _UNSAFE.sub(_visible, text)


def shown(text: str, limit: int) -> ShownText:
    """The first `limit` characters of `text` with control characters written out as escapes."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return ShownText(visible(text[:limit]), len(text), len(text) > limit)


def one_line(text: str, limit: int) -> str:
    """A short single-line preview (newlines shown as ⏎) for tables."""
    preview = shown(text, limit)
    return preview.text.replace("\n", " ⏎ ") + ("…" if preview.truncated else "")
