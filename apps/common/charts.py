"""Server-side line charts as inline SVG: the dashboard needs no JavaScript and nothing from another server."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 150, 56, 20, 10


def line_chart(points: list[tuple[datetime, float | None]], *, title: str, unit: str = "") -> SafeString:
    """A line over time; gaps (None) break the line. The y axis starts at 0 and ends at the largest value."""
    known = [(at, value) for at, value in points if value is not None]
    if not known:
        return format_html('<p class="help">{}: no samples yet.</p>', title)
    start, end = points[0][0].timestamp(), points[-1][0].timestamp()
    span = max(end - start, 1.0)
    top = max(value for _, value in known) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM

    def xy(at: datetime, value: float) -> str:
        x = LEFT + (at.timestamp() - start) / span * plot_w
        y = TOP + plot_h - value / top * plot_h
        return f"{x:.1f},{y:.1f}"

    lines, current = [], []
    for at, value in points:
        if value is None:
            if current:
                lines.append(current)
            current = []
        else:
            current.append(xy(at, value))
    if current:
        lines.append(current)
    polylines = format_html_join(
        "", '<polyline fill="none" stroke="#417690" stroke-width="1.5" points="{}"/>', ((" ".join(line),) for line in lines)
    )
    return format_html(
        '<figure class="flow-chart"><figcaption>{title}</figcaption>'
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{title}" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}">'
        '<line x1="{left}" y1="{base}" x2="{w}" y2="{base}" stroke="#999"/>'
        '<line x1="{left}" y1="{top_y}" x2="{left}" y2="{base}" stroke="#999"/>'
        '<text x="{label_x}" y="{top_label}" font-size="11" text-anchor="end">{top_value}</text>'
        '<text x="{label_x}" y="{base}" font-size="11" text-anchor="end">0</text>'
        '<text x="{left}" y="{h}" font-size="11">{first}</text>'
        '<text x="{w}" y="{h}" font-size="11" text-anchor="end">{last} UTC</text>'
        "{polylines}</svg></figure>",
        title=title, w=WIDTH, h=HEIGHT, left=LEFT, base=TOP + plot_h, top_y=TOP, label_x=LEFT - 4,
        top_label=TOP + 8, top_value=f"{axis_number(top)}{unit}", first=f"{points[0][0]:%H:%M}", last=f"{points[-1][0]:%H:%M}",
        polylines=polylines,
    )


def axis_number(value: float) -> str:
    """A y-axis label narrow enough for the left margin: whole numbers from 100 up, three digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
