"""Small inline SVG charts for the HTML report (no script, no external asset): a bar
chart for the freshness distribution, a line chart for storage over time.
"""

from __future__ import annotations

import time
from html import escape
from typing import Sequence

from homesync.console import human_size

PALETTE = ("#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#6b7280")
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 40, 44


def bar_chart(bars: Sequence[tuple[str, int, str]], title: str, width: int = 560, height: int = 240) -> str:
    """Given (label, value, colour) bars, return an SVG bar chart."""
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    top = max([v for _, v, _ in bars] + [1])
    step = plot_w / max(1, len(bars))
    ticks = sorted({round(top * i / 4) for i in range(5)})
    parts = [_open(width, height, title), _y_axis([(t, str(t)) for t in ticks], top, width, height)]
    for i, (label, value, colour) in enumerate(bars):
        h = plot_h * value / top
        x, y = LEFT + i * step + step * 0.15, TOP + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{colour}">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        parts.append(_text(x + step * 0.35, y - 4, str(value), "middle"))
        parts.append(_text(x + step * 0.35, TOP + plot_h + 16, label, "middle"))
    return "".join(parts) + "</svg>"


def line_chart(times: Sequence[float], series: Sequence[tuple[str, Sequence[int]]], title: str,
               width: int = 640, height: int = 280) -> str:
    """Given bucket times and (label, cumulative bytes) series, return an SVG line chart
    with byte ticks, dates below and a legend."""
    if not times or not series:
        return _open(width, 80, title) + _text(LEFT, 40, "no backups yet", "start") + "</svg>"
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM - 16 * ((len(series) + 2) // 3)
    top = max(max(values) for _, values in series) or 1
    span = (times[-1] - times[0]) or 1

    def point(t: float, v: int) -> str:
        return f"{LEFT + plot_w * (t - times[0]) / span:.1f},{TOP + plot_h - plot_h * v / top:.1f}"

    parts = [_open(width, height, title),
             _y_axis([(top * i / 4, human_size(top * i / 4)) for i in range(5)], top, width, TOP + plot_h + BOTTOM)]
    for i in sorted({0, len(times) // 2, len(times) - 1}):
        x = LEFT + plot_w * (times[i] - times[0]) / span
        parts.append(_text(x, TOP + plot_h + 16, _date(times[i]), "middle" if 0 < i < len(times) - 1
                           else ("start" if i == 0 else "end")))
    for n, (label, values) in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(point(t, v) for t, v in zip(times, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                     f'<title>{escape(label)}</title></polyline>')
        lx, ly = LEFT + (n % 3) * plot_w / 3, TOP + plot_h + 36 + 16 * (n // 3)
        parts.append(f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(lx + 14, ly, label, "start"))
    return "".join(parts) + "</svg>"


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + _text(LEFT, 16, title, "start", "title"))


def _y_axis(ticks: Sequence[tuple[float, str]], top: float, width: int, height: int) -> str:
    """Return horizontal grid lines with their labels for a plot ending at height - BOTTOM."""
    plot_h = height - TOP - BOTTOM
    parts = []
    for value, label in ticks:
        y = TOP + plot_h - plot_h * value / top
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{width - RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(_text(LEFT - 6, y + 4, label, "end"))
    return "".join(parts)


def _text(x: float, y: float, text: str, anchor: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attr}>{escape(text)}</text>'


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))
