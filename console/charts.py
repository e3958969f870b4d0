"""Charts for the console's pages, drawn on the server as SVG.

The console's charts, drawn on the server as inline SVG: no script, no CDN, nothing the
admin's pages do not already serve. Colours come from ``console.css`` by series key."""

from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from console.dashboard import Chart

WIDTH, HEIGHT = 760, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM


def stacked_bars(chart: Chart) -> SafeString:
    """One bar per hour, its series stacked; hovering a bar lists its numbers."""
    count = len(chart.hours)
    step = PLOT_WIDTH / count
    totals = [sum(series.values[i] for series in chart.series) for i in range(count)]
    top = _scale_top(max(totals, default=0))
    parts = []
    for i, hour in enumerate(chart.hours):
        x = LEFT + i * step
        base = 0
        bar = []
        for series in chart.series:
            value = series.values[i]
            if value:
                y0, y1 = _y(base, top), _y(base + value, top)
                bar.append(
                    f'<rect class="s-{series.key}" x="{x + step * 0.1:.1f}" y="{y1:.1f}" '
                    f'width="{step * 0.8:.1f}" height="{y0 - y1:.1f}"/>'
                )
                base += value
        hover = _hover_target(x, step, _tooltip(chart, i, hour))
        parts.append(f"<g>{hover}{''.join(bar)}</g>")
    return _svg(chart, top, "".join(parts))


def lines(chart: Chart) -> SafeString:
    """One line per series over the hours."""
    count = len(chart.hours)
    step = PLOT_WIDTH / count
    top = _scale_top(max((max(s.values, default=0) for s in chart.series), default=0))
    parts = []
    for series in chart.series:
        points = " ".join(
            f"{LEFT + (i + 0.5) * step:.1f},{_y(value, top):.1f}"
            for i, value in enumerate(series.values)
        )
        parts.append(f'<polyline class="s-{series.key}" fill="none" points="{points}"/>')
    hovers = [
        _hover_target(LEFT + i * step, step, _tooltip(chart, i, hour))
        for i, hour in enumerate(chart.hours)
    ]
    return _svg(chart, top, "".join(parts + hovers))


def _svg(chart: Chart, top: int, body: str) -> SafeString:
    grid = []
    for value in sorted({0, top // 2, top}):
        y = _y(value, top)
        grid.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(chart.title)}</title>'
        f"{''.join(grid)}{_x_labels(chart.hours)}{body}</svg>"
    )
    # Built here from numbers and escaped text only.
    return mark_safe(svg)


def _x_labels(hours: list[datetime]) -> str:
    step = PLOT_WIDTH / len(hours)
    # A label every 3 hours over a day, every midnight over a week.
    daily = len(hours) > 48
    labels = []
    for i, hour in enumerate(hours):
        if (daily and hour.hour != 0) or (not daily and hour.hour % 3):
            continue
        text = hour.strftime("%m-%d") if daily else hour.strftime("%H:00")
        labels.append(
            f'<text class="axis" x="{LEFT + i * step:.1f}" y="{HEIGHT - 6}">{text}</text>'
        )
    return "".join(labels)


def _tooltip(chart: Chart, index: int, hour: datetime) -> str:
    values = ", ".join(f"{s.label} {s.values[index]}" for s in chart.series)
    return f"{hour:%Y-%m-%d %H:00 %Z}: {values}"


def _hover_target(x: float, step: float, text: str) -> str:
    return (
        f'<rect class="hover" x="{x:.1f}" y="{TOP}" width="{step:.1f}" '
        f'height="{PLOT_HEIGHT}"><title>{escape(text)}</title></rect>'
    )


def _scale_top(highest: int) -> int:
    """A round number at or above ``highest``: 1, 2, 5, 10, 20, 50, …"""
    top = 1
    while top < highest:
        top = _next_round(top)
    return top


def _next_round(value: int) -> int:
    digits = len(str(value)) - 1
    leading = value // 10**digits
    following = {1: 2, 2: 5, 5: 10}[leading]
    return following * 10**digits


def _y(value: int, top: int) -> float:
    return TOP + PLOT_HEIGHT * (1 - value / top)
