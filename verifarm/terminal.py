"""What the CLI writes to a terminal: text from the store made inert, and progress that degrades to plain lines.

Completions are written by a policy (or a hostile user of an endpoint): sent raw, an escape sequence in one
could rewrite the screen or the title bar. Progress is a rich bar on a terminal and a plain line every few
seconds when the output is a file or a pipe (a log must not fill with redraw codes).
"""

from __future__ import annotations

import sys
import time
import unicodedata
from typing import IO, Any

# Control characters, format characters (bidirectional overrides among them), lone surrogates (bytes that were
# not valid UTF-8) and private-use characters are shown escaped; everything else, non-ASCII text included, as is.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def _escape(char: str, json_style: bool) -> str:
    code = ord(char)
    if not json_style:
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON spells characters beyond the BMP as a surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def inert(text: str, keep_newlines: bool = False, json_style: bool = False) -> str:
    """`text` with every character that could steer a terminal written as a visible escape (`\\x1b`).

    `json_style` writes `\\u001b` instead, so that JSON text stays valid JSON meaning the same string.
    """
    out = []
    for char in text:
        if keep_newlines and char == "\n":
            out.append(char)
        elif unicodedata.category(char) in _UNSAFE_CATEGORIES:
            out.append(_escape(char, json_style))
        else:
            out.append(char)
    return "".join(out)


def is_terminal(stream: IO[str] | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressReporter:
    """One long job's progress: a rich bar with live fields on a terminal, else a plain line per interval.

    `update(completed, **fields)` sets the fields shown (step, loss, tokens/s, a waiting note); `note(text)` shows
    a status line (plain output writes it once each time it changes).
    """

    def __init__(
        self,
        description: str,
        total: float | None,
        stream: IO[str] | None = None,
        plain_interval_s: float = 5.0,
        fields: tuple[str, ...] = (),
        eta: bool = False,
    ) -> None:
        self.description = description
        self.total = total
        self.stream = stream or sys.stderr
        self.plain_interval_s = plain_interval_s
        self.fields = fields
        self.eta = eta and total is not None
        self._started = time.monotonic()
        self._first_completed: float | None = None
        self._values: dict[str, Any] = dict.fromkeys(fields, "-")
        self._completed = 0.0
        self._last_plain = float("-inf")
        self._last_note = ""
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressReporter:
        if is_terminal(self.stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            columns: list[Any] = [TextColumn("[bold]{task.description}")]
            if self.total is not None:
                columns += [BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn(f"{name} {{task.fields[{name}]}}") for name in self.fields]
            columns += [TextColumn("{task.fields[note]}"), TimeElapsedColumn()]
            if self.eta:
                columns += [TextColumn("ETA"), TimeRemainingColumn()]
            self._progress = Progress(*columns, console=Console(file=self.stream), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, note="", **self._values)
        return self

    def update(self, completed: float | None = None, **fields: Any) -> None:
        if completed is not None:
            if self._first_completed is None:
                self._first_completed, self._started = completed, time.monotonic()
            self._completed = completed
        self._values.update({k: v for k, v in fields.items() if k in self._values})
        if self._progress is not None:
            self._progress.update(self._task, completed=self._completed, **self._values)
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_interval_s:
            self._last_plain = now
            self._plain_line()

    def note(self, text: str) -> None:
        """A status that replaces the previous one (e.g. what the job waits for)."""
        if self._progress is not None:
            self._progress.update(self._task, note=text)
        elif text and text != self._last_note:
            print(f"{self.description}: {text}", file=self.stream, flush=True)
        self._last_note = text

    def _plain_line(self) -> None:
        done = f" {self._completed:.0f}/{self.total:.0f}" if self.total is not None else ""
        values = "  ".join(f"{name} {self._values[name]}" for name in self.fields)
        print(f"{self.description}{done}  {values}{self._eta_text()}".rstrip(), file=self.stream, flush=True)

    def _eta_text(self) -> str:
        """Remaining time at the rate seen since the first update (plain output; rich keeps its own estimate)."""
        if not self.eta or self._first_completed is None or self.total is None:
            return ""
        gained, elapsed = self._completed - self._first_completed, time.monotonic() - self._started
        if gained <= 0 or elapsed <= 0:
            return "  ETA -"
        remaining = max(0.0, self.total - self._completed) * elapsed / gained
        return f"  ETA {int(remaining // 60)}:{int(remaining % 60):02d}"

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif exc[0] is None:
            self._plain_line()
