"""Text from the store made inert for a terminal, and progress that degrades to plain lines off a terminal."""

from __future__ import annotations

import io
import json

from verifarm.terminal import ProgressReporter, inert


def test_control_format_and_invalid_characters_are_escaped_and_text_is_kept() -> None:
    assert inert("plain text, é, 数, ∑") == "plain text, é, 数, ∑"
    assert inert("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert inert("a\u202eb\u200fc") == "a\\u202eb\\u200fc"  # bidirectional overrides and marks
    assert inert("bad byte \udcff") == "bad byte \\udcff"  # a byte that was not UTF-8 (surrogateescape)
    assert inert("\x7f\x9b") == "\\x7f\\x9b"  # DEL and the 8-bit CSI
    assert inert("two\nlines") == "two\\x0alines" and inert("two\nlines", keep_newlines=True) == "two\nlines"


def test_json_style_escapes_keep_json_meaning_the_same_string() -> None:
    value = "\x1b]0;title\x07 \u202e \U000f0001 ok"
    text = inert(json.dumps(value, ensure_ascii=False), json_style=True)
    assert "\x1b" not in text and "\u202e" not in text and "\U000f0001" not in text
    assert json.loads(text) == value


def test_progress_off_a_terminal_is_plain_lines_and_each_note_once() -> None:
    stream = io.StringIO()  # not a terminal
    with ProgressReporter("train", total=3, stream=stream, plain_interval_s=0.0, fields=("loss",)) as progress:
        progress.update(1, loss="0.5")
        progress.note("waiting for rollouts")
        progress.note("waiting for rollouts")
        progress.update(3, loss="0.4")
    lines = stream.getvalue().splitlines()
    assert lines == ["train 1/3  loss 0.5", "train: waiting for rollouts", "train 3/3  loss 0.4", "train 3/3  loss 0.4"]
    assert "\x1b" not in stream.getvalue()
