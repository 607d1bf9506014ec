"""Inline SVG charts drawn on the server (a line chart and a forest plot), so pages need no JavaScript.

Every label goes through `escape`; the result is `Markup` that templates insert as it is.
Series differ by colour (Okabe-Ito, safe for colour-blind readers) and by dash pattern, and a point
drawn alone by the shape of its marker. A line chart carries its figures as a table folded under it:
its description gives the last values only, and the days before them are what a reader may need.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from markupsafe import Markup, escape

from service.http.console.chart_ticks import nice_ticks, number, percent, percent_tick, tick

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#8a6d00", "#3a8fc7", "#222222")
DASHES = ("", "7 4", "2 3", "9 3 2 3", "1 3", "12 4", "4 4")
# A point with no neighbour has no dash to tell its series by: each series' own shape instead.
MARKERS = ("circle", "square", "triangle", "diamond")
AXIS = "#555555"
GRID = "#dddddd"
# Roughly how wide one character of an axis label is at the charts' 13px font, to keep labels apart.
_LABEL_CHAR_PX = 7.5
Format = Callable[[float], str]
_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    """One line: a value per x position (None leaves a gap), with an optional interval band."""

    name: str
    values: Sequence[float | None]
    band: Sequence[Sequence[float] | None] | None = None


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: an estimate and its interval (None when there is none yet)."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None


def _svg(width: int, height: int, title: str, summary: str, body: list[str]) -> Markup:
    n = next(_ids)
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-labelledby="chart-{n}-title" aria-describedby="chart-{n}-desc" font-family="system-ui, sans-serif" font-size="13">'
        f'<title id="chart-{n}-title">{escape(title)}</title><desc id="chart-{n}-desc">{escape(summary)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _marker(k: int, x: float, y: float, colour: str) -> str:
    """Series k's marker centred on (x, y)."""
    shape = MARKERS[k % len(MARKERS)]
    if shape == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4.5:.1f},{y + 3.5:.1f} {x - 4.5:.1f},{y + 3.5:.1f}" fill="{colour}"/>'
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} {x - 5:.1f},{y:.1f}" fill="{colour}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'


def _legend(names: Sequence[str], x: float, y: float, width: float, markers: bool = False) -> tuple[list[str], float]:
    """Legend entries laid out in rows, each with its series' marker where some point stands alone; answer the markup and the height used."""
    out, cx, cy = [], x, y
    for i, name in enumerate(names):
        w = 48 + 8 * len(name)  # a generous guess at the text's width: the server cannot measure it
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        out.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{cx + 22:.1f}" y2="{cy:.1f}" stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>')
        if markers:
            out.append(_marker(i, cx + 11, cy, colour))
        out.append(f'<text x="{cx + 27:.1f}" y="{cy + 4:.1f}" fill="#222">{escape(name)}</text>')
        cx += w
    return out, cy - y + 18


def line_chart(
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str = "",
    y_format: Format = number,
    percent: bool = False,
    tick_format: Format | None = None,
    zero: bool = False,
    x_name: str = "",
    width: int = 860,
    height: int = 280,
    band_reach: float | None = None,
) -> Markup:
    """Lines over categorical x positions (days, versions), with y ticks, x labels and a legend, and
    every figure in a table under it whose first column `x_name` heads.

    `y_format` writes the values the description gives; a tick is written exactly (as a percentage
    with `percent`, or by `tick_format`), since a tick rounded like a value (27.5 % as "28%") names
    the wrong gridline. `zero` keeps 0 in range and marks it with a dashed line, for differences.
    With `band_reach`, a band sets the range only where it is at most that many times as wide as its
    series' last band: the first days' bands of a confidence sequence, tens of times wider, had flattened
    every later day to a line. Wider ones are cut at the plot's edge; the table gives them whole.
    """
    left, right, top, bottom = 64, 32, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    alone = any(len(run) == 1 for s in series for run in _runs(s.values))
    legend, legend_h = _legend([s.name for s in series], left, height + 4, plot_w, markers=alone)
    values = [v for s in series for v in s.values if v is not None]
    values += [b for s in series for pair in _ranging(s.band or [], band_reach) for b in pair]
    if not x_labels or not values:
        return _svg(width, 60, title, "no data yet", [f'<text x="{left}" y="34" fill="#222">No data yet.</text>'])
    ticks = nice_ticks(min(values + [0.0] * zero), max(values + [0.0] * zero))
    plot = _Plot(left, top, plot_w, plot_h, ticks[0], ticks[-1], len(x_labels))
    body = _y_grid(plot, ticks, tick_format, percent, zero) + _x_labels(plot, x_labels)
    if y_label:
        body.append(f'<text x="12" y="{top + plot_h / 2:.1f}" transform="rotate(-90 12 {top + plot_h / 2:.1f})" text-anchor="middle" fill="{AXIS}">{escape(y_label)}</text>')
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>')
    body += _series_marks(plot, series)
    body.extend(legend)
    full = height + int(legend_h) + 4
    summary = _summary(series, x_labels, y_format)
    return _svg(width, full, title, summary + "; every figure is in the table under the chart", body) + _table(title, x_name, x_labels, series, y_format)


@dataclass(frozen=True)
class _Plot:
    """A line chart's plot area in pixels, its range of values, and how many x positions it spreads over it."""

    left: int
    top: int
    width: int
    height: int
    lo: float
    hi: float
    count: int

    def x(self, i: int) -> float:
        """The x pixel of position i (one position alone sits in the middle)."""
        return self.left + (i * self.step if self.count > 1 else self.width / 2)

    def y(self, v: float) -> float:
        """The y pixel of value v."""
        return self.top + self.height * (1 - (v - self.lo) / (self.hi - self.lo))

    def inside(self, v: float) -> float:
        """v, cut to the range shown."""
        return min(max(v, self.lo), self.hi)

    @property
    def step(self) -> float:
        """Pixels between neighbouring x positions."""
        return self.width / max(self.count - 1, 1)


def _y_grid(plot: _Plot, ticks: Sequence[float], tick_format: Format | None, percent: bool, zero: bool) -> list[str]:
    """A gridline and a label for each tick, and with `zero` a dashed line at 0."""
    body = []
    for t in ticks:
        body.append(f'<line x1="{plot.left}" y1="{plot.y(t):.1f}" x2="{plot.left + plot.width}" y2="{plot.y(t):.1f}" stroke="{GRID}"/>')
        shown_tick = tick_format(t) if tick_format else tick(t, 100, "%") if percent else tick(t)
        body.append(f'<text x="{plot.left - 6}" y="{plot.y(t) + 4:.1f}" text-anchor="end" fill="{AXIS}">{escape(shown_tick)}</text>')
    if zero:
        body.append(f'<line x1="{plot.left}" y1="{plot.y(0.0):.1f}" x2="{plot.left + plot.width}" y2="{plot.y(0.0):.1f}" stroke="#222" stroke-dasharray="4 3"/>')
    return body


def _x_labels(plot: _Plot, x_labels: Sequence[str]) -> list[str]:
    """About eight x labels, evenly spaced, and always the last."""
    every = max(1, math.ceil(len(x_labels) / 8))
    last = len(x_labels) - 1
    shown = set(range(0, len(x_labels), every))
    if last > 0 and last not in shown:
        # The newest label always shows; the regular one before it goes when the two would overlap
        # (the last is anchored at its end, the other at its middle: 1.5 labels' width between them).
        before = last - last % every
        if (last - before) * plot.step < 1.5 * _LABEL_CHAR_PX * max(len(x_labels[last]), len(x_labels[before])) + 6 and before > 0:
            shown.discard(before)
        shown.add(last)
    body = []
    for i in sorted(shown):
        # The ends are anchored inward, so that a long first or last label is not cut by the frame.
        anchor = "start" if i == 0 and last > 0 else "end" if i == last and last > 0 else "middle"
        body.append(f'<text x="{plot.x(i):.1f}" y="{plot.top + plot.height + 16}" text-anchor="{anchor}" fill="{AXIS}">{escape(x_labels[i])}</text>')
    return body


def _series_marks(plot: _Plot, series: Sequence[Series]) -> list[str]:
    """Each series' band, its lines, and a marker for each point that stands alone."""
    body = []
    for k, s in enumerate(series):
        colour, dash = PALETTE[k % len(PALETTE)], DASHES[k % len(DASHES)]
        if s.band:
            upper = [(plot.x(i), plot.y(plot.inside(b[1]))) for i, b in enumerate(s.band) if b]
            lower = [(plot.x(i), plot.y(plot.inside(b[0]))) for i, b in enumerate(s.band) if b]
            if len(upper) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower[::-1])
                body.append(f'<polygon points="{points}" fill="{colour}" fill-opacity="0.12" stroke="none"/>')
            elif upper:  # one day has no area to fill: its interval as a bar
                (x, high), (_, low) = upper[0], lower[0]
                body.append(f'<line class="band" x1="{x:.1f}" y1="{high:.1f}" x2="{x:.1f}" y2="{low:.1f}" stroke="{colour}" stroke-opacity="0.5" stroke-width="6"/>')
        for run in _runs(s.values):
            points = " ".join(f"{plot.x(i):.1f},{plot.y(v):.1f}" for i, v in run)
            if len(run) == 1:
                body.append(_marker(k, plot.x(run[0][0]), plot.y(run[0][1]), colour))
            else:
                body.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash}"/>')
    return body


def _summary(series: Sequence[Series], x_labels: Sequence[str], y_format: Format) -> str:
    """What the chart's description says: the points it spans and each series' last value."""
    last = len(x_labels) - 1
    # A series may end before the axis does (no user is old enough for the last days yet): its last value names its point.
    latest = {s.name: next(((i, v) for i, v in reversed(list(enumerate(s.values))) if v is not None), None) for s in series}
    span = f"1 point, {x_labels[0]}" if len(x_labels) == 1 else f"{len(x_labels)} points from {x_labels[0]} to {x_labels[-1]}"
    return f"{span}; last values: " + ", ".join(
        f"{name} {y_format(found[1])}{'' if found[0] == last else f' at {x_labels[found[0]]}'}" if found is not None else f"{name} none"
        for name, found in latest.items()
    )


def _table(title: str, x_name: str, x_labels: Sequence[str], series: Sequence[Series], y_format: Format) -> Markup:
    """A line chart's figures, each value with its band, folded in a <details> under it."""

    def cell(s: Series, i: int) -> str:
        value = s.values[i] if i < len(s.values) else None
        if value is None or not math.isfinite(value):
            return '<td class="num">–</td>'
        band = s.band[i] if s.band and i < len(s.band) else None
        within = f'<br><span class="muted">[{escape(y_format(band[0]))}, {escape(y_format(band[1]))}]</span>' if band else ""
        return f'<td class="num">{escape(y_format(value))}{within}</td>'

    head = "".join(f'<th scope="col" class="num">{escape(s.name)}{" [interval]" if s.band else ""}</th>' for s in series)
    rows = "".join(f'<tr><th scope="row">{escape(x)}</th>{"".join(cell(s, i) for s in series)}</tr>' for i, x in enumerate(x_labels))
    return Markup(
        f'<details class="chart-data"><summary>The figures as a table<span class="visually-hidden">: {escape(title)}</span></summary>'
        f'<table><caption class="visually-hidden">{escape(title)}</caption><thead><tr><th scope="col">{escape(x_name)}</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></details>"
    )


def _ranging(band: Sequence[Sequence[float] | None], reach: float | None) -> list[Sequence[float]]:
    """The intervals of a band that set a chart's range: all, or with `reach` those at most `reach` times as wide as the last."""
    pairs = [pair for pair in band if pair]
    if reach is None or not pairs:
        return pairs
    last = pairs[-1][1] - pairs[-1][0]
    return [pair for pair in pairs if pair[1] - pair[0] <= reach * last] if last > 0 else pairs


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """Consecutive non-missing points, so that a gap breaks the line."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, v))
    return [r for r in runs if r]


def forest_plot(
    title: str, rows: Sequence[Interval], *, x_format: Format = percent, tick_format: Format = percent_tick, width: int = 860, lower_is_better: bool = False,
) -> Markup:
    """Each row's interval as a horizontal bar with its estimate, against a line at zero; an interval wholly on
    the better side (right of zero, or left where `lower_is_better`) in green, wholly on the worse side in orange."""
    label_w, right, top, row_h, bottom = 150, 30, 12, 34, 36
    plot_w = width - label_w - right
    height = top + row_h * max(len(rows), 1) + bottom
    bounds = [v for r in rows for v in (r.low, r.high, r.estimate) if v is not None and math.isfinite(v)]
    ticks = nice_ticks(min(bounds + [0.0]), max(bounds + [0.0]))
    lo, hi = ticks[0], ticks[-1]

    def px(v: float) -> float:
        return label_w + plot_w * (v - lo) / (hi - lo)

    body = []
    for t in ticks:
        body.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{height - bottom}" stroke="{GRID}"/>')
        body.append(f'<text x="{px(t):.1f}" y="{height - bottom + 16}" text-anchor="middle" fill="{AXIS}">{escape(tick_format(t))}</text>')
    body.append(f'<line x1="{px(0):.1f}" y1="{top}" x2="{px(0):.1f}" y2="{height - bottom}" stroke="#222" stroke-dasharray="4 3"/>')
    described = []
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        body.append(f'<text x="{label_w - 10}" y="{y + 4:.1f}" text-anchor="end" fill="#222">{escape(r.label)}</text>')
        if r.estimate is None or r.low is None or r.high is None:
            body.append(f'<text x="{label_w + 6}" y="{y + 4:.1f}" fill="{AXIS}">no estimate yet</text>')
            described.append(f"{r.label}: no estimate yet")
            continue
        # Colour says whether the whole interval lies on the better or the worse side of zero; the text gives the figures.
        above, below = r.low > 0, r.high < 0
        better, worse = (below, above) if lower_is_better else (above, below)
        colour = PALETTE[2] if better else PALETTE[1] if worse else PALETTE[0]
        text = f"{r.label}: {x_format(r.estimate)} [{x_format(r.low)}, {x_format(r.high)}]"
        described.append(text)
        body.append(f"<g><title>{escape(text)}</title>")
        body.append(f'<line x1="{px(r.low):.1f}" y1="{y:.1f}" x2="{px(r.high):.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="3"/>')
        for end in (r.low, r.high):
            body.append(f'<line x1="{px(end):.1f}" y1="{y - 6:.1f}" x2="{px(end):.1f}" y2="{y + 6:.1f}" stroke="{colour}" stroke-width="2"/>')
        body.append(f'<rect x="{px(r.estimate) - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/></g>')
    if not rows:
        body.append(f'<text x="{label_w}" y="{top + 18}" fill="{AXIS}">No treatment arms.</text>')
    return _svg(width, height, title, "; ".join(described) or "no rows", body)
