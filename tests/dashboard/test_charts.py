"""Server-side charts and the inert text helper."""

from __future__ import annotations

import pytest

from verifarm.dashboard.charts import Series, _ticks, bar_chart, line_chart
from verifarm.dashboard.text import one_line, shown


def test_line_chart_draws_each_series_and_escapes_labels():
    svg = line_chart(
        [Series("<b>loss</b>", [(0, 2.0), (1, 1.5), (2, 1.0)]), Series("empty", [])], "a <title>", "step", "loss"
    )
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 3
    assert "&lt;b&gt;loss&lt;/b&gt;" in svg and "<b>" not in svg and "a &lt;title&gt;" in svg
    assert "no data yet" in line_chart([], "t", "x", "y")


def test_long_series_are_downsampled_keeping_the_last_point():
    svg = line_chart([Series("s", [(i, float(i)) for i in range(10_001)])], "t", "x", "y", downsample=100)
    points = svg.split('points="', 1)[1].split('"', 1)[0].split()
    assert len(points) <= 102 and points[-1] == f"{56 + 492:.1f},{28:.1f}"


def test_ticks_are_round_and_integer_axes_never_split_a_version():
    assert _ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert _ticks(2, 3, integer=True) == [2, 3]
    assert "no data yet" in bar_chart([], "t", "y")
    import re

    heights = [
        float(h)
        for h in re.findall(
            r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', bar_chart([("a", 1.0), ("b", 0.5)], "t", "y")
        )
    ]
    assert len(heights) == 2 and heights[1] == pytest.approx(heights[0] / 2, abs=0.1)


def test_shown_text_makes_controls_visible_and_cuts():
    text = shown("a\x1b[31mb\x00\n\u202ec" + "z" * 100, limit=11)
    assert text.text == "a\\x1b[31mb\\x00\n\\u202ec" and text.truncated and text.total_chars == 111
    assert one_line("x\ny", 10) == "x ⏎ y"
    with pytest.raises(ValueError, match="limit must be positive"):
        shown("x", 0)
