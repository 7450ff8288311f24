"""The SVG charts, the graph picture and the money formatting, as pure functions."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from api.web import charts
from api.web.formatting import bps, money, share

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # well-formed XML, or this raises


@pytest.mark.parametrize(
    ("value", "axis"),
    [
        (0, (1, 1)),
        (1, (1, 1)),
        (2, (2, 1)),
        (5, (5, 1)),
        (7, (8, 2)),
        (11, (15, 5)),
        (1999, (2000, 500)),
        (2001, (2500, 500)),
        (10**9, (10**9, 2 * 10**8)),
    ],
)
def test_axes_step_by_round_numbers_up_to_the_highest_value(value, axis):
    assert charts.nice_axis(value) == axis


def test_a_line_chart_has_a_line_an_area_and_one_point_per_day():
    labels = ["2026-11-01", "2026-11-02", "2026-11-03"]
    svg = _parse(charts.line_chart(labels, [0, 1999, 500], chart_id="c", title="Revenue"))
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c-title c-desc"
    assert svg.find(f"{SVG}title").text == "Revenue"
    paths = svg.findall(f".//{SVG}path")
    assert {p.get("class") for p in paths} == {"line", "area"}
    points = svg.findall(f".//{SVG}circle")
    assert len(points) == 3
    assert points[1].find(f"{SVG}title").text == "2026-11-02: 1999"
    # the highest point touches the top of the 0..2000 axis; zero sits on the baseline
    ys = [float(c.get("cy")) for c in points]
    assert ys[1] < ys[2] < ys[0]


def test_a_single_day_still_draws_a_visible_line():
    svg = _parse(charts.line_chart(["2026-11-01"], [5], chart_id="c", title="t"))
    line = next(p for p in svg.iter(f"{SVG}path") if p.get("class") == "line")
    assert re.match(r"M[\d.]+ [\d.]+ L[\d.]+ [\d.]+$", line.get("d"))


def test_a_bar_chart_draws_a_bar_per_nonzero_value_inside_the_plot():
    svg = _parse(charts.bar_chart(["a", "b", "c", "d"], [3, 0, 1, 10], chart_id="b", title="t"))
    bars = svg.findall(f".//{SVG}rect")
    assert len(bars) == 3
    for bar in bars:
        assert float(bar.get("height")) > 0 and float(bar.get("width")) > 0
        assert 64 <= float(bar.get("x")) <= 640 - 16 - float(bar.get("width"))


def test_empty_series_say_so_instead_of_drawing_nothing():
    for draw in (charts.line_chart, charts.bar_chart):
        svg = _parse(draw([], [], chart_id="e", title="t"))
        assert "No sales yet" in "".join(svg.itertext())
    svg = _parse(charts.referral_graph({"nodes": [], "edges": []}, chart_id="g", title="t"))
    assert "No sales yet" in "".join(svg.itertext())


def test_the_graph_picture_colours_depths_rings_brokers_and_escapes_handles():
    picture = {
        "nodes": [
            {"id": "f1", "handle": "<b>ann</b>", "level": 1, "x": 0, "y": 0, "broker": True},
            {"id": "f2", "handle": "bob", "level": 2, "x": 500, "y": 300, "broker": False},
            {"id": "f3", "handle": "cyd", "level": 9, "x": 1000, "y": 600, "broker": False},
        ],
        "edges": [["f1", "f2"], ["f2", "f3"], ["f2", "missing"]],
    }
    markup = charts.referral_graph(picture, chart_id="g", title="Graph")
    assert "<b>" not in markup and "&lt;b&gt;ann&lt;/b&gt;" in markup
    svg = _parse(markup)
    circles = svg.findall(f".//{SVG}circle")
    assert len(circles) == 3
    assert circles[-1].get("class") == "node broker"  # drawn last, on top
    fills = {c.find(f"{SVG}title").text.split(",")[0]: c.get("fill") for c in circles}
    assert fills["bob"] == charts.depth_colour(2) and fills["cyd"] == charts.DEEPER
    assert len(svg.findall(f".//{SVG}g[@class='edges']/{SVG}path")) == 2
    assert svg.get("viewBox") == "-30 -50 1060 680"


def test_chart_text_is_escaped():
    markup = charts.bar_chart(['<img src=x onerror="1">'], [1], chart_id='x"', title="<t>")
    assert "<img" not in markup and "<t>" not in markup
    _parse(markup)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "USD", "19.99 USD"),
        (123456789, "EUR", "1,234,567.89 EUR"),
        (-83, "USD", "-0.83 USD"),
        (0, "USD", "0.00 USD"),
        (1999, "JPY", "1,999 JPY"),
        (1999, "KWD", "1.999 KWD"),
        (1234567, None, "1,234,567"),
    ],
)
def test_money_is_written_from_integer_minor_units(amount, currency, text):
    assert money(amount, currency) == text


@pytest.mark.parametrize(
    ("rate", "text"), [(500, "5%"), (250, "2.5%"), (25, "0.25%"), (5000, "50%"), (0, "0%")]
)
def test_basis_points_read_as_percentages(rate, text):
    assert bps(rate) == text


def test_a_one_day_line_chart_is_a_stem_with_its_value_over_labelled_axes():
    svg = _parse(charts.line_chart(["2026-11-05"], [5997], chart_id="c", title="Revenue"))
    line = next(p for p in svg.iter(f"{SVG}path") if p.get("class") == "line")
    x1, y1, x2, y2 = map(float, re.findall(r"[\d.]+", line.get("d")))
    assert x1 == x2 and y1 - y2 > 100, "a tall vertical stem from the baseline"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "5997" in texts and "2026-11-05" in texts  # the value and the day
    ticks = [t.text for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end"]
    assert ticks[0] == "0" and int(ticks[-1]) > 5997, "the value axis has room above the day"
    assert svg.find(f"{SVG}desc").text == "1 point on 2026-11-05: 5997."


def test_a_one_day_bar_chart_is_one_bar_not_a_wall_with_its_value_written():
    svg = _parse(charts.bar_chart(["2026-11-05"], [3], chart_id="b", title="Sales", width=520))
    (bar,) = svg.findall(f".//{SVG}rect")
    width, x = float(bar.get("width")), float(bar.get("x"))
    assert 20 <= width <= 48
    assert abs(x + width / 2 - (64 + (520 - 64 - 16) / 2)) < 1, "centred in the plot"
    value = next(t for t in svg.iter(f"{SVG}text") if t.get("class") == "value")
    assert value.text == "3" and float(value.get("y")) < float(bar.get("y"))
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "2026-11-05" in labels and labels.count("0") == 1  # the axis starts at 0


def test_a_month_of_bars_writes_no_values_on_them():
    labels = [f"2026-11-{d:02d}" for d in range(1, 31)]
    svg = _parse(charts.bar_chart(labels, list(range(30)), chart_id="b", title="t"))
    assert not [t for t in svg.iter(f"{SVG}text") if t.get("class") == "value"]


@pytest.mark.parametrize(
    ("score", "text"),
    [
        ("0.125000", "12.5%"),
        ("0.000123", "<0.1%"),
        ("0.000500", "0.1%"),
        ("0.999999", "100.0%"),
        ("1.000000", "100.0%"),
        ("0.000000", "0%"),
        ("0.012345", "1.2%"),
        ("nonsense", "—"),
        (None, "—"),
    ],
)
def test_scores_read_as_percentages_with_one_decimal(score, text):
    assert share(score) == text
