"""Server-side line charts as inline SVG: the dashboard needs no JavaScript and nothing from another server."""

from __future__ import annotations

from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 150, 64, 20, 10
LEGEND = 12  # the legend's own row above the plot, so neither covers the other


# Colour-blind-safe (Okabe-Ito), the admin's blue first.
PALETTE = ("#417690", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#0072b2", "#000000")
Points = list[tuple[datetime, float | None]]


def line_chart(points: Points, *, title: str, unit: str = "") -> SafeString:
    """A line over time; gaps (None) break the line. The y axis starts at 0 and ends at the largest value."""
    return lines_chart({"": points}, title=title, unit=unit)


def lines_chart(series: dict[str, Points], *, title: str, unit: str = "") -> SafeString:
    """One line per named series on a shared time axis (the first and last time of any series), named in a
    legend (an empty name: no legend entry); each series' gaps (None) break its line."""
    every = [point for points in series.values() for point in points]
    known = [value for _, value in every if value is not None]
    if not known:
        return format_html('<p class="help">{}: no samples yet.</p>', title)
    start = min(at for at, _ in every).timestamp()
    last = max(at for at, _ in every)
    span = max(last.timestamp() - start, 1.0)
    top = max(known) or 1.0
    named = [name for name in series if name]
    plot_top = TOP + (LEGEND if named else 0)
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - plot_top - BOTTOM

    def xy(at: datetime, value: float) -> str:
        x = LEFT + (at.timestamp() - start) / span * plot_w
        y = plot_top + plot_h - value / top * plot_h
        return f"{x:.1f},{y:.1f}"

    polylines = []
    for index, points in enumerate(series.values()):
        colour = PALETTE[index % len(PALETTE)]
        polylines += [(colour, " ".join(xy(at, value) for at, value in line)) for line in _segments(points)]
    legend = [(LEFT + 8 + 130 * index, PALETTE[index % len(PALETTE)], name) for index, name in enumerate(series)
              if name]
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
        "{polylines}{legend}</svg></figure>",
        title=title, w=WIDTH, h=HEIGHT, left=LEFT, base=plot_top + plot_h, top_y=plot_top, label_x=LEFT - 4,
        top_label=plot_top + 8, top_value=f"{axis_number(top)}{unit}",
        first=f"{datetime.fromtimestamp(start, last.tzinfo):%H:%M}",
        last=f"{last:%H:%M}",
        polylines=format_html_join(
            "", '<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>', polylines
        ),
        legend=format_html_join(
            "", '<rect x="{0}" y="5" width="10" height="4" fill="{1}"/>'
                '<text x="{0}" y="11" dx="14" font-size="11" class="legend">{2}</text>', legend
        ),
    )


def _segments(points: Points) -> list[list[tuple[datetime, float]]]:
    """The runs of known values, in time order, that make one polyline each."""
    segments: list[list[tuple[datetime, float]]] = [[]]
    for at, value in sorted(points, key=lambda point: point[0]):
        if value is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((at, value))
    return [segment for segment in segments if segment]


def axis_number(value: float) -> str:
    """A y-axis label narrow enough for the left margin: whole numbers from 100 up, three digits below."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
