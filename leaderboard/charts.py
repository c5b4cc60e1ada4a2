"""Line charts as inline SVG: drawn at build time, so they show without JavaScript and without
any request (no chart library, no CDN). Each point carries a <title>: the browser's own tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

# Colour-blind-safe (Okabe-Ito), then a few more; cycled when there are more series.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 200, 16, 44  # the right margin holds the legend
Series = tuple[str, Sequence[tuple[float, float]]]


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str, log_x: bool = False) -> str:
    """An SVG line chart of `series` (label, [(x, y), ...]); y from 0 to 1, or to 100 for 0-100 metrics."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return ""
    xs = sorted({x for x, _ in points})
    y_max = 1.0 if max(y for _, y in points) <= 1.0 else 100.0
    fx = _x_scale(xs, log_x)

    def fy(y: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - y / y_max)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *_axes(xs, fx, fy, y_max, x_label, y_label),
    ]
    for index, (label, pts) in enumerate(series):
        parts += _series(index, label, sorted(pts), fx, fy, x_label, y_label)
    parts.append("</svg>")
    return "\n".join(parts)


def _x_scale(xs: list[float], log_x: bool):
    """x value -> pixel; a single x sits in the middle."""
    left, right = LEFT + 12, WIDTH - RIGHT - 12
    tx = (lambda x: math.log10(x)) if log_x and xs[0] > 0 else (lambda x: x)
    low, high = tx(xs[0]), tx(xs[-1])
    if high == low:
        return lambda x: (left + right) / 2
    return lambda x: left + (right - left) * (tx(x) - low) / (high - low)


def _axes(xs: list[float], fx, fy, y_max: float, x_label: str, y_label: str) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="#fff" stroke="#ccc"/>']
    for step in range(5):  # horizontal grid lines with their labels
        y = y_max * step / 4
        py = fy(y)
        out.append(f'<line x1="{LEFT}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>')
        text = f"{y:g}" if y_max == 100 else f"{y:.2f}"
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end" font-size="11" fill="#444">{text}</text>')
    for x in _x_ticks(xs):
        px = fx(x)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#444"/>')
        out.append(f'<text x="{px:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11" fill="#444">{x:g}</text>')
    mid_x, mid_y = (LEFT + right) / 2, (TOP + bottom) / 2
    out.append(f'<text x="{mid_x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="12">{escape(x_label)}</text>')
    out.append(
        f'<text x="14" y="{mid_y:.1f}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 14 {mid_y:.1f})">{escape(y_label)}</text>'
    )
    return out


def _x_ticks(xs: list[float], most: int = 10) -> list[float]:
    """The data's own x values, thinned to at most `most` so that labels do not overlap."""
    if len(xs) <= most:
        return xs
    stride = math.ceil(len(xs) / most)
    return xs[::stride] + ([xs[-1]] if (len(xs) - 1) % stride else [])


def _series(index: int, label: str, pts: list[tuple[float, float]], fx, fy, x_label: str, y_label: str) -> list[str]:
    colour = PALETTE[index % len(PALETTE)]
    coords = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
    out = [f'<g class="series" data-label="{escape(label)}">']
    if len(pts) > 1:
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for x, y in pts:
        tip = f"{label}: {y_label} {y:.4g} at {x_label} {x:g}"
        out.append(
            f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3.5" fill="{colour}"><title>{escape(tip)}</title></circle>'
        )
    ly = TOP + 8 + 18 * index
    lx = WIDTH - RIGHT + 14
    out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/>')
    short = label if len(label) <= 28 else label[:27] + "…"
    out.append(f'<text x="{lx + 24}" y="{ly + 4}" font-size="11"><title>{escape(label)}</title>{escape(short)}</text>')
    out.append("</g>")
    return out
