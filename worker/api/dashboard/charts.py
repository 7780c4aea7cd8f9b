"""Charts drawn on the server as SVG: no script, no request leaving the machine (the pages' CSP
allows none). Pure: buckets in, markup out: the trends' stacked bars, and API calls per hour."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

from feeds.history.trends import Bucket, Step

WIDTH, HEIGHT = 720, 200
CALLS_COLOUR = "#2458d6"  # the dashboard's accent: 5.7:1 on white
LEFT, BOTTOM, TOP = 48, 24, 10
# Colours with a 4.5:1 contrast on white for the legend text; the bars also carry a <title>.
SERIES = (("synced", "#1f7a3a"), ("failed", "#b42318"), ("skipped", "#6b7280"))


def stacked_bars(buckets: Sequence[Bucket], step: Step, title: str) -> Markup:
    """A stacked bar per bucket (synced, failed, skipped), a y axis with its maximum, x labels."""
    peak = max((b.total for b in buckets), default=0)
    scale = max(peak, 1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(buckets), 1)
    bar = max(slot * 0.7, 1)
    totals = {name: sum(getattr(b, name) for b in buckets) for name, _ in SERIES}
    summary = f"{title}: " + ", ".join(f"{totals[n]:,} {n}" for n, _ in SERIES)
    parts = _frame("chart", summary, peak, plot_h)
    every = 3 if step is Step.HOUR else 1
    for n, b in enumerate(buckets):
        x = LEFT + n * slot + (slot - bar) / 2
        y = TOP + plot_h
        label = b.start.strftime("%H:00" if step is Step.HOUR else "%m-%d")
        tip = f"{b.start:%Y-%m-%d %H:00} UTC: " + ", ".join(
            f"{getattr(b, name):,} {name}" for name, _ in SERIES
        )
        parts.append(f'<g class="bar" data-start="{b.start.isoformat()}"><title>{tip}</title>')
        for name, colour in SERIES:
            height = plot_h * getattr(b, name) / scale
            if height > 0:
                y -= height
                parts.append(
                    f'<rect class="{name}" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                    f'height="{height:.1f}" fill="{colour}"/>'
                )
        parts.append("</g>")
        if n % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'font-size="11" fill="#4b5563">{label}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def call_bars(hours: Sequence[tuple[datetime, int]], title: str) -> Markup:
    """API calls per hour: a bar per hour, a y axis with the busiest hour, x labels every 3 hours."""
    peak = max((calls for _, calls in hours), default=0)
    scale = max(peak, 1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(hours), 1)
    bar = max(slot * 0.7, 1)
    total = sum(calls for _, calls in hours)
    summary = f"{title}: {total:,} call{'' if total == 1 else 's'}, at most {peak:,} in an hour"
    parts = _frame("chart calls-chart", summary, peak, plot_h)
    for n, (start, calls) in enumerate(hours):
        x = LEFT + n * slot + (slot - bar) / 2
        height = plot_h * calls / scale
        parts.append(
            f'<g class="bar" data-start="{start.isoformat()}" data-calls="{calls}">'
            f"<title>{start:%Y-%m-%d %H:00} UTC: {calls:,} call{'' if calls == 1 else 's'}</title>"
        )
        if height > 0:
            parts.append(
                f'<rect class="calls" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}" fill="{CALLS_COLOUR}"/>'
            )
        parts.append("</g>")
        if (len(hours) - 1 - n) % 3 == 0:  # the current hour always labelled
            last = n == len(hours) - 1  # anchored at its end: not cut by the chart's edge
            parts.append(
                f'<text x="{WIDTH if last else x + bar / 2:.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="{"end" if last else "middle"}" font-size="11" '
                f'fill="#4b5563">{start:%H:00}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _frame(css_class: str, summary: str, peak: int, plot_h: float) -> list[str]:
    """The opening of a bar chart: the svg element with its accessible summary, the x axis, and
    the y axis labels (0 and the peak)."""
    return [
        f'<svg class="{css_class}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(summary)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH}" y2="{TOP + plot_h}" stroke="#9aa3b2"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end" font-size="11" fill="#4b5563">'
        f"{peak:,}</text>",
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="11" '
        'fill="#4b5563">0</text>',
    ]
