"""LiteLLM spend against Lago cost per day as inline SVG: grouped bars, axes, legend, tooltips."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from reconcile.report.display import cents
from reconcile.results import DailySpend

WIDTH, HEIGHT = 960, 340
LEFT, RIGHT, TOP, BOTTOM = 84, 16, 44, 52
MAX_DAY_LABELS = 16
SERIES = (
    ("litellm", "LiteLLM spend", "#4c78a8"),
    ("lago", "Lago cost", "#f58518"),
)


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering low..high, 0 included."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low <= 0:
        high = 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [index * step for index in range(first, last + 1)]


def _tick_label(value: float, step: float) -> str:
    decimals = 0
    while decimals < 8 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    text = f"{value:,.{decimals}f}"
    return "0" if value == 0 else text


def _text(x: float, y: float, text: str, *, anchor: str = "middle", css: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{css}" fill="#59636e">'
        f"{escape(text)}</text>"
    )


def daily_chart(daily: Sequence[DailySpend]) -> str:
    """A figure holding the chart, one bar per series and day; a short note when no day."""
    if not daily:
        return '<p class="muted">No days in the window: nothing to chart.</p>'
    values = [float(v) for day in daily for v in (day.litellm_spend, day.lago_cost)]
    ticks = nice_ticks(min(values), max(values))
    low, high = ticks[0], ticks[-1]
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(value: float) -> float:
        return TOP + plot_height * (high - value) / (high - low)

    out = [
        '<figure class="chart" id="daily-chart">',
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        ' role="img" aria-labelledby="chart-title"'
        ' font-family="system-ui, sans-serif" font-size="12">',
        '<title id="chart-title">LiteLLM spend and Lago cost per day, USD</title>',
    ]
    step = ticks[1] - ticks[0]
    for tick in ticks:
        y = y_of(tick)
        stroke = "#59636e" if tick == 0 else "#e5e9ee"
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{stroke}"/>'
        )
        out.append(_text(LEFT - 8, y + 4, _tick_label(tick, step), anchor="end", css="y-tick"))
    out.append(
        f'<text transform="translate(16 {TOP + plot_height / 2:.1f}) rotate(-90)" '
        'text-anchor="middle" fill="#59636e">USD</text>'
    )
    slot = plot_width / len(daily)
    bar = min(slot * 0.38, 28.0)
    every = math.ceil(len(daily) / MAX_DAY_LABELS)
    zero = y_of(0.0)
    for index, day in enumerate(daily):
        centre = LEFT + slot * (index + 0.5)
        for offset, (key, name, colour), amount in zip(
            (-bar, 0.0), SERIES, (day.litellm_spend, day.lago_cost), strict=True
        ):
            top = y_of(float(amount))
            y, height = min(top, zero), abs(zero - top)
            out.append(
                f'<rect class="bar {key}" data-day="{day.day.isoformat()}"'
                f' x="{centre + offset:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}"'
                f' fill="{colour}">'
                f"<title>{escape(f'{day.day.isoformat()}  {name}: {cents(amount)} USD')}</title>"
                "</rect>"
            )
        if index % every == 0:
            label = f"{day.day:%b} {day.day.day}"
            out.append(_text(centre, TOP + plot_height + 18, label, css="x-tick"))
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_height}" stroke="#59636e"/>'
    )
    out.append(_text(LEFT + plot_width / 2, HEIGHT - 8, "day", css="axis-title"))
    x = LEFT
    for key, name, colour in SERIES:
        out.append(
            f'<rect class="legend {key}" x="{x}" y="14" width="12" height="12" fill="{colour}"/>'
        )
        out.append(_text(x + 18, 24, name, anchor="start", css="legend-label"))
        x += 150
    out.append("</svg></figure>")
    return "\n".join(out)
