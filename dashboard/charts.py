"""Charts drawn on the server as SVG: no script, nothing fetched, and the markup is built from numbers only
(labels go through `markupsafe.escape`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float]]  # (x, y)


def _ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    if high <= low:
        return [low]
    raw = (high - low) / count
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def _chart_head(title: str, width: int, height: int, left: int) -> list[str]:
    """The opening of every chart: the SVG element, its accessible title and the visible one."""
    return [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]


def _empty_chart(parts: list[str], width: int, height: int) -> Markup:
    parts.append(
        f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="chart-empty">no data yet</text></svg>'
    )
    return Markup("".join(parts))


def line_chart(
    series: list[Series],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 560,
    height: int = 260,
    y_range: tuple[float, float] | None = None,
    downsample: int = 400,
    integer_x: bool = False,
) -> Markup:
    """Lines (with dots when sparse) on shared axes; an empty chart says so. `integer_x` for versions or steps."""
    series = [s for s in series if s.points]
    left, right, top, bottom = 56, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _chart_head(title, width, height, left)
    if not series:
        return _empty_chart(parts, width, height)
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range or (min(ys), max(ys))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if integer_x:
        x0, x1 = math.floor(x0), math.ceil(x1)
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    for tick in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" class="grid"/>')
        parts.append(
            f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" class="tick">{_label(tick)}</text>'
        )
    for tick in _ticks(x0, x1, integer=integer_x):
        parts.append(
            f'<text x="{px(tick):.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{_label(tick)}</text>'
        )
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" class="axis">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'class="axis">{escape(y_label)}</text>'
    )
    for index, line in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = line.points
        if len(points) > downsample:  # every k-th point, always keeping the last
            stride = math.ceil(len(points) / downsample)
            points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        if len(points) <= 40:
            parts.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{colour}"/>' for x, y in points)
        legend_y = top + 14 + 14 * index
        parts.append(
            f'<rect x="{left + plot_w - 150}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + plot_w - 136}" y="{legend_y}" class="legend">{escape(line.name[:28])}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    bars: list[tuple[str, float]],
    title: str,
    y_label: str,
    width: int = 560,
    height: int = 240,
    y_max: float | None = None,
) -> Markup:
    """Vertical bars with their category under each."""
    left, right, top, bottom = 56, 12, 28, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = _chart_head(title, width, height, left)
    if not bars:
        return _empty_chart(parts, width, height)
    top_value = y_max if y_max is not None else max(value for _, value in bars) or 1.0
    slot = plot_w / len(bars)
    for tick in _ticks(0, top_value):
        y = top + (1 - tick / top_value) * plot_h
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_label(tick)}</text>'
        )
    for index, (name, value) in enumerate(bars):
        bar_h = max(0.0, value / top_value * plot_h)
        x = left + index * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{bar_h:.1f}" fill="{PALETTE[0]}"><title>{escape(name)}: {_label(value)}</title></rect>'
        )
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
            f'class="tick">{escape(name[:14])}</text>'
        )
    parts.append(
        f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
        f'class="axis">{escape(y_label)}</text></svg>'
    )
    return Markup("".join(parts))
