"""Charts and the referral-graph picture as inline SVG, drawn on the server.

- No JavaScript and no chart library: the page is complete as sent, works offline and
  satisfies a Content-Security-Policy without ``'unsafe-inline'`` (colours are SVG
  presentation attributes, never ``style`` attributes).
- Values are integers (counts, minor units); only pixel coordinates are fractional.
- Every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` for screen
  readers, and a ``<title>`` per point or node as a hover tooltip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

ACCENT = "#2563eb"
ACCENT_SOFT = "#dbeafe"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
EDGE = "#cbd5e1"

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
DEPTH_COLOURS = ("#334155", "#0072b2", "#009e73", "#e69f00", "#d55e00", "#cc79a7")
DEEPER = "#94a3b8"
BROKER_RING = "#111827"

Formatter = Callable[[int], str]

_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 64, 16, 14, 30
_SINGLE_WIDTH = 48  # the widest a bar (or a one-day column) gets
_LABELLED_BARS = 7  # up to a week of bars, each bar has its value written on top


def depth_colour(depth: int) -> str:
    return DEPTH_COLOURS[depth] if 0 <= depth < len(DEPTH_COLOURS) else DEEPER


def nice_axis(value: int, *, max_ticks: int = 5) -> tuple[int, int]:
    """``(top, step)`` of an integer axis from 0 covering ``value``: the step is 1, 2 or 5
    times a power of ten, with at most ``max_ticks`` steps up to the top."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            size = step * factor
            steps = max(1, -(-value // size))  # ceiling division
            if steps <= max_ticks:
                return steps * size, size
        step *= 10


def _n(value: float) -> str:
    """A compact coordinate: at most one decimal, no trailing zeros."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _frame(chart_id: str, title: str, desc: str, viewbox: str, body: Iterable[str]) -> Markup:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" '
        f'viewBox="{viewbox}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
        *body,
        "</svg>",
    ]
    return Markup("".join(parts))  # noqa: S704 - every interpolated value is escaped


def _axes(
    labels: Sequence[str], top: int, step: int, fmt: Formatter, width: int, height: int
) -> tuple[list[str], float, float]:
    """Gridlines, y tick labels and x labels; returns them with the plot's width/height."""
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM
    out = ['<g class="axes" font-size="12" font-family="inherit">']
    for i, value in enumerate(range(0, top + 1, step)):
        y = _MARGIN_TOP + plot_h - plot_h * value / top
        out.append(
            f'<line x1="{_MARGIN_LEFT}" x2="{width - _MARGIN_RIGHT}" y1="{_n(y)}" y2="{_n(y)}" '
            f'stroke="{GRID if i else MUTED}" stroke-width="1"/>'
            f'<text x="{_MARGIN_LEFT - 6}" y="{_n(y + 4)}" text-anchor="end" fill="{MUTED}">'
            f"{escape(fmt(value))}</text>"
        )
    if labels:
        picks = sorted({0, len(labels) // 2, len(labels) - 1})
        for i in picks:
            x = _x(i, len(labels), plot_w)
            anchor = "start" if i == 0 and len(labels) > 1 else "middle"
            if i == len(labels) - 1 and len(labels) > 1:
                anchor = "end"
            out.append(
                f'<text x="{_n(x)}" y="{height - 10}" text-anchor="{anchor}" fill="{MUTED}">'
                f"{escape(labels[i])}</text>"
            )
    out.append("</g>")
    return out, plot_w, plot_h


def _x(i: int, n: int, plot_w: float) -> float:
    if n == 1:
        return _MARGIN_LEFT + plot_w / 2
    return _MARGIN_LEFT + plot_w * i / (n - 1)


def _value_label(x: float, top: float, text: str) -> str:
    """A value written just above a bar or a point."""
    return (
        f'<text class="value" x="{_n(x)}" y="{_n(max(top - 6, 11))}" text-anchor="middle" '
        f'font-size="12" font-weight="600" fill="{INK}">{escape(text)}</text>'
    )


def _headroom(values: Sequence[int]) -> int:
    """The highest value plus a fifth: room above it for its written value."""
    high = max(values)
    return high + -(-high // 5)


def _desc(noun: str, labels: Sequence[str], values: Sequence[int], fmt: Formatter) -> str:
    if len(values) == 1:
        return f"1 {noun} on {labels[0]}: {fmt(values[0])}."
    return f"{len(values)} {noun}s from {labels[0]} to {labels[-1]}; highest {fmt(max(values))}."


def _empty(chart_id: str, title: str, width: int, height: int) -> Markup:
    return _frame(
        chart_id,
        title,
        "No data yet.",
        f"0 0 {width} {height}",
        [
            f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" '
            f'fill="none" stroke="{GRID}" stroke-dasharray="4 4"/>',
            f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle" '
            f'fill="{MUTED}" font-size="14">No sales yet</text>',
        ],
    )


def line_chart(
    labels: Sequence[str],
    values: Sequence[int],
    *,
    chart_id: str,
    title: str,
    fmt: Formatter = str,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """A line with a soft area under it, one point per label (e.g. per day)."""
    if not values:
        return _empty(chart_id, title, width, height)
    top, step = nice_axis(_headroom(values) if len(values) == 1 else max(values))
    grid, plot_w, plot_h = _axes(labels, top, step, fmt, width, height)
    base = _MARGIN_TOP + plot_h
    points = [(_x(i, len(values), plot_w), base - plot_h * v / top) for i, v in enumerate(values)]
    line = " ".join(f"{'M' if i == 0 else 'L'}{_n(x)} {_n(y)}" for i, (x, y) in enumerate(points))
    area = f"{line} L{_n(points[-1][0])} {_n(base)} L{_n(points[0][0])} {_n(base)} Z"
    if len(points) == 1:
        # One day has no line to draw: a stem from the baseline up to the day's value,
        # over a soft column, with the value written above it.
        x, y = points[0]
        line = f"M{_n(x)} {_n(base)} L{_n(x)} {_n(y)}"
        half = _SINGLE_WIDTH / 2
        area = f"M{_n(x - half)} {_n(y)} L{_n(x + half)} {_n(y)} L{_n(x + half)} {_n(base)} "
        area += f"L{_n(x - half)} {_n(base)} Z"
    body = [
        *grid,
        f'<path class="area" d="{area}" fill="{ACCENT_SOFT}" stroke="none"/>',
        f'<path class="line" d="{line}" fill="none" stroke="{ACCENT}" stroke-width="2" '
        'stroke-linejoin="round" stroke-linecap="round"/>',
        '<g class="points">',
    ]
    radius = 3 if len(points) <= 62 else 1.5
    if len(points) == 1:
        radius = 5
    for (x, y), label, value in zip(points, labels, values, strict=True):
        body.append(
            f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{radius}" fill="#fff" stroke="{ACCENT}" '
            f'stroke-width="1.5"><title>{escape(label)}: {escape(fmt(value))}</title></circle>'
        )
    body.append("</g>")
    if len(points) == 1:
        body.append(_value_label(points[0][0], points[0][1] - radius, fmt(values[0])))
    return _frame(
        chart_id, title, _desc("point", labels, values, fmt), f"0 0 {width} {height}", body
    )


def bar_chart(
    labels: Sequence[str],
    values: Sequence[int],
    *,
    chart_id: str,
    title: str,
    fmt: Formatter = str,
    colour: str = ACCENT,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """One bar per label; zero values draw nothing but keep their slot."""
    if not values:
        return _empty(chart_id, title, width, height)
    plot = _BarPlot(labels, values, fmt, width, height)
    body = [*plot.grid, '<g class="bars">']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value <= 0:
            continue
        x, y, h = plot.bar(i, 0, value)
        body.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(plot.bar_w)}" height="{_n(h)}" '
            f'rx="1.5" fill="{colour}"><title>{escape(label)}: {escape(fmt(value))}</title></rect>'
        )
        if plot.labelled:
            body.append(_value_label(x + plot.bar_w / 2, y, fmt(value)))
    body.append("</g>")
    return _frame(chart_id, title, _desc("bar", labels, values, fmt), f"0 0 {width} {height}", body)


class _BarPlot:
    """The axes and the bar slots of a bar chart whose bars reach up to ``highs``."""

    def __init__(
        self, labels: Sequence[str], highs: Sequence[int], fmt: Formatter, width: int, height: int
    ) -> None:
        self.labelled = len(highs) <= _LABELLED_BARS
        self.top, step = nice_axis(_headroom(highs) if self.labelled else max(highs))
        self.grid, self.plot_w, self.plot_h = _axes(labels, self.top, step, fmt, width, height)
        self.base = _MARGIN_TOP + self.plot_h
        self.n = len(highs)
        # Capped, so that one day or a few are bars, not a wall across the plot.
        self.bar_w = min(max(1.0, self.plot_w / self.n * 0.7), _SINGLE_WIDTH)

    def bar(self, i: int, below: int, value: int) -> tuple[float, float, float]:
        """``(x, y, height)`` of slot ``i``'s bar from ``below`` up to ``below + value``."""
        cx = _x(i, self.n, self.plot_w) if self.n > 1 else _MARGIN_LEFT + self.plot_w / 2
        # Keep the first and last bars inside the plot.
        x = min(max(cx - self.bar_w / 2, _MARGIN_LEFT), _MARGIN_LEFT + self.plot_w - self.bar_w)
        y0 = self.base - self.plot_h * below / self.top
        h = max(1.0, self.plot_h * value / self.top)
        return x, y0 - h, h


def stacked_bar_chart(
    labels: Sequence[str],
    stacks: Sequence[tuple[str, str, Sequence[int]]],
    *,
    chart_id: str,
    title: str,
    fmt: Formatter = str,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """One bar per label, split into ``stacks`` of ``(name, colour, values)`` drawn from
    the first upwards; each piece has its name and value as a tooltip, and up to a week
    of bars have their total written on top. Zero and negative pieces draw nothing (a
    refund taking back more than the period earned leaves its bar short, not below 0)."""
    totals = [sum(max(0, s[2][i]) for s in stacks) for i in range(len(labels))]
    if not labels or not any(totals):
        return _empty(chart_id, title, width, height)
    plot = _BarPlot(labels, totals, fmt, width, height)
    body = [*plot.grid, '<g class="bars">']
    for i, label in enumerate(labels):
        below = 0
        for name, colour, values in stacks:
            value = values[i]
            if value <= 0:
                continue
            x, y, h = plot.bar(i, below, value)
            below += value
            body.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(plot.bar_w)}" height="{_n(h)}" '
                f'fill="{colour}" data-stack="{escape(name)}"><title>{escape(label)}, '
                f"{escape(name)}: {escape(fmt(value))}</title></rect>"
            )
        if plot.labelled and below:
            x, y, _ = plot.bar(i, 0, below)
            body.append(_value_label(x + plot.bar_w / 2, y, fmt(below)))
    body.append("</g>")
    desc = _desc("bar", labels, totals, fmt) + " Split by " + ", ".join(s[0] for s in stacks) + "."
    return _frame(chart_id, title, desc, f"0 0 {width} {height}", body)


def daily_charts(
    series: Sequence[Mapping[str, Any]], *, fmt: Formatter, unit: str
) -> dict[str, Markup]:
    """Revenue (a wide line), sales and rewards (bars) of a daily series of
    ``{"date", "sales", "revenue", "rewards"}``; money is written with ``fmt`` in ``unit``."""
    labels = [str(day["date"]) for day in series]

    def column(name: str) -> list[int]:
        return [int(day[name]) for day in series]

    return {
        "revenue": line_chart(
            labels,
            column("revenue"),
            chart_id="chart-revenue",
            title=f"Revenue per day ({unit})",
            fmt=fmt,
            width=1100,
            height=260,
        ),
        "sales": bar_chart(
            labels, column("sales"), chart_id="chart-sales", title="Sales per day", width=520
        ),
        "rewards": bar_chart(
            labels,
            column("rewards"),
            chart_id="chart-rewards",
            title=f"Rewards to fans per day ({unit})",
            fmt=fmt,
            colour=DEPTH_COLOURS[2],
            width=520,
        ),
    }


def referral_graph(picture: Mapping[str, Any], *, chart_id: str, title: str) -> Markup:
    """The referral forest: edges sponsor -> fan, nodes coloured by their depth in it
    (the picture's ``level``: 0 for a fan without sponsor), brokers ringed and labelled.
    Node positions come laid out in a 1000 x 600 box."""
    nodes: list[Mapping[str, Any]] = list(picture.get("nodes") or [])
    width, height = 1000, 600
    pad_x, pad_top, pad_bottom = 30, 50, 30  # room for node radii and broker labels
    if not nodes:
        return _empty(chart_id, title, width, height)
    where = {str(n["id"]): (float(n["x"]), float(n["y"])) for n in nodes}
    body = [
        f'<rect x="{-pad_x}" y="{-pad_top}" width="{width + 2 * pad_x}" '
        f'height="{height + pad_top + pad_bottom}" fill="#fbfcfe"/>',
        f'<g class="edges" stroke="{EDGE}" stroke-width="2" fill="none">',
    ]
    for edge in picture.get("edges") or []:
        src, dst = (str(end) for end in edge)
        if src in where and dst in where:
            (x1, y1), (x2, y2) = where[src], where[dst]
            body.append(f'<path d="M{_n(x1)} {_n(y1)} L{_n(x2)} {_n(y2)}"/>')
    body.append('</g><g class="nodes">')
    labels = []
    # Brokers last, so their rings sit on top.
    for node in sorted(nodes, key=lambda n: bool(n.get("broker"))):
        x, y = where[str(node["id"])]
        depth = int(node.get("level") or 0)
        broker = bool(node.get("broker"))
        handle = str(node.get("handle") or node["id"])
        tip = f"{handle}, depth {depth}" + (", top broker" if broker else "")
        ring = (
            f' stroke="{BROKER_RING}" stroke-width="4"'
            if broker
            else ' stroke="#fff" stroke-width="2"'
        )
        body.append(
            f'<circle class="{"node broker" if broker else "node"}" cx="{_n(x)}" cy="{_n(y)}" '
            f'r="{14 if broker else 9}" fill="{depth_colour(depth)}"{ring}>'
            f"<title>{escape(tip)}</title></circle>"
        )
        if broker:
            labels.append(
                f'<text x="{_n(x)}" y="{_n(y - 22)}" text-anchor="middle" font-size="22" '
                f'font-weight="600" fill="{INK}" stroke="#fff" stroke-width="4" '
                f'paint-order="stroke">{escape(handle)}</text>'
            )
    body.append("</g>")
    body.append(f'<g class="labels">{"".join(labels)}</g>')
    brokers = sum(1 for n in nodes if n.get("broker"))
    desc = (
        f"{len(nodes)} fans and {len(picture.get('edges') or [])} sponsor links; "
        f"{brokers} top brokers ringed and named."
    )
    viewbox = f"{-pad_x} {-pad_top} {width + 2 * pad_x} {height + pad_top + pad_bottom}"
    return _frame(chart_id, title, desc, viewbox, body)


def swatch(depth: int) -> Markup:
    """A small coloured dot for the graph's legend."""
    return colour_swatch(depth_colour(depth))


def colour_swatch(colour: str) -> Markup:
    """A small dot of ``colour`` (one of this module's constants) for a legend."""
    return Markup(  # noqa: S704 - a constant colour, nothing from outside
        '<svg class="swatch" viewBox="0 0 12 12" aria-hidden="true" focusable="false">'
        f'<circle cx="6" cy="6" r="5" fill="{escape(colour)}"/></svg>'
    )
