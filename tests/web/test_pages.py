"""What the artist and fan pages show, the reward-plan form, and the CSV statement."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from royalties.db import utcnow
from royalties.models import RewardPlan
from tests.helpers import buy, row_counts, share
from tests.web.conftest import _content


def _plan_versions(session, artist_id: str) -> list[tuple[int, list[int], int]]:
    session.rollback()
    rows = session.execute(
        select(RewardPlan.version, RewardPlan.level_rates_bps, RewardPlan.hold_days)
        .where(RewardPlan.scope == f"artist:{artist_id}")
        .order_by(RewardPlan.version)
    ).all()
    session.rollback()
    return [(v, list(r), h) for v, r, h in rows]


@pytest.fixture
def artist_visitor(visitor, cast):
    """The artist of the cast (no sales yet), signed in on its page."""
    visitor.sign_in(cast.artist.key)
    visitor.get(f"/dashboard/artists/{cast.artist.id}")
    return visitor


@pytest.fixture
def seller_visitor(visitor, world):
    """The artist of the world (sales, fans, refunds), signed in on its page."""
    visitor.sign_in(world.artist.key)
    return visitor


def test_the_artist_page_shows_content_figures_charts_top_fans_and_the_graph(seller_visitor, world):
    html = seller_visitor.get(f"/dashboard/artists/{world.artist.id}").get_data(as_text=True)
    # content list with sales counts
    assert "Midnight Drive" in html and "Neon Atlas" in html
    assert "Someone Else" not in html
    # program return figures
    assert 'id="roi"' in html and "Attributed revenue" in html and "Return on rewards" in html
    # three charts and the referral picture, drawn on the server
    for chart in ("chart-revenue", "chart-sales", "chart-rewards", "referral-graph"):
        assert f'id="{chart}"' in html
    graph = html[html.index('id="referral-graph"') :]
    assert graph.count("<circle") >= 8 and "<path" in graph
    assert 'class="node broker"' in graph
    # top fans: the fans who brought sales, with their handles
    top = html[html.index('id="top-fans"') :]
    assert "fay" in top and "bob" in top
    # the plan form, prefilled with the current plan
    assert 'value="500"' in html and 'value="30"' in html and "version 1" in html


def test_the_top_fans_table_ranks_by_the_chosen_measure(seller_visitor, world):
    base = f"/dashboard/artists/{world.artist.id}"
    for rank in ("pagerank", "betweenness", "downline", "rewards", "revenue_any_level"):
        page = seller_visitor.get(base, query_string={"rank": rank})
        assert page.status_code == 200
        assert re.search(rf'rank={rank}[^"]*"[^>]*aria-current="page"', page.get_data(as_text=True))
    assert seller_visitor.get(base, query_string={"rank": "nonsense"}).status_code == 200


def _section(html: str, start: str, end: str) -> str:
    found = html[html.index(start) :]
    return found[: found.index(end)]


def test_influence_and_broker_scores_read_as_percentages_never_raw_scores(seller_visitor, world):
    base = f"/dashboard/artists/{world.artist.id}"
    for rank in ("pagerank", "betweenness", "attributed_revenue"):
        html = seller_visitor.get(base, query_string={"rank": rank}).get_data(as_text=True)
        table = _section(html, 'id="top-fans"', "</table>")
        rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
        assert rows, rank
        for row in rows:
            cells = re.findall(r'<td class="num">(.*?)</td>', row, re.S)
            influence, broker = cells[3], cells[4]
            for text in (influence, broker):
                assert re.fullmatch(r"(\d{1,3}\.\d%|<0\.1%|0%)", text.replace("&lt;", "<")), text
        assert not re.search(r"0\.\d{6}", table), "a raw six-decimal score"
        assert "Influence</a>" in table and "Broker score</a>" in table
        assert 'id="scores-help"' in html and "add up to 100%" in html
    # the fans' influence shares, over the whole graph, add up to at most 100%
    html = seller_visitor.get(base, query_string={"rank": "pagerank"}).get_data(as_text=True)
    table = _section(html, 'id="top-fans"', "</table>")
    shares = [
        float(cells[3].rstrip("%"))
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]
        if (cells := re.findall(r'<td class="num">(.*?)</td>', row, re.S))
        and not cells[3].startswith("&lt;")
    ]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100.5


def test_the_graph_legend_and_tooltips_say_depth_where_they_mean_depth(seller_visitor, world):
    html = seller_visitor.get(f"/dashboard/artists/{world.artist.id}").get_data(as_text=True)
    legend = _section(html, '<ul class="legend"', "</ul>")
    assert "depth 0 (no sponsor)" in legend and "depth 1" in legend
    assert "level" not in legend
    graph = _section(html, 'id="referral-graph"', "</svg>")
    tips = re.findall(r"<title>([^<]*)</title>", graph)  # the nodes' (the chart's has an id)
    assert tips and all(", depth " in tip for tip in tips)
    assert any(tip.startswith("ann, depth 0") for tip in tips)
    meta = _section(html, 'id="graph-heading"', "</p>")
    # ann <- bob <- cyd <- dee <- eve <- fay <- the buyers who came through fay's link
    assert "deepest fan at depth 6" in meta


def test_the_largest_cascades_list_each_chain_of_fans_once_with_its_sales(seller_visitor, world):
    html = seller_visitor.get(f"/dashboard/artists/{world.artist.id}").get_data(as_text=True)
    listed = _section(html, "Largest cascades", "</ul>")
    items = re.findall(r"<li>(.*?)</li>", listed, re.S)
    chains = [tuple(re.findall(r'<span class="handle">([^<]+)</span>', item)) for item in items]
    assert len(chains) == len(set(chains)) == 5
    # three buyers came through fay's link: one cascade of five levels, three sales
    fay = next(item for item, chain in zip(items, chains, strict=True) if chain[0] == "fay")
    assert chains.count(("fay", "eve", "dee", "cyd", "bob")) == 1 and "3 sales" in fay
    assert "5 levels:" in items[0]


def test_an_artist_with_sales_on_one_day_gets_readable_charts(visitor, api, world):
    track = _content(api, world.other_artist, "One Day Single", "track", 1500)
    code = share(api, world.fans["ann"], track["id"])
    for n in range(2):
        buy(api, world.shop, track, {"email": f"oneday{n}@example.com"}, share_code=code)
    visitor.sign_in(world.other_artist.key)
    html = visitor.get(f"/dashboard/artists/{world.other_artist.id}").get_data(as_text=True)
    today = utcnow().date().isoformat()
    revenue = _section(html, 'id="chart-revenue"', "</svg>")
    assert f"1 point on {today}: 30.00." in revenue
    assert re.search(r'class="line" d="M([\d.]+) [\d.]+ L\1 [\d.]+"', revenue)  # a stem
    assert '<text class="value"' in revenue and ">30.00</text>" in revenue
    assert f">{today}</text>" in revenue and ">0.00</text>" in revenue  # both axes labelled
    sales = _section(html, 'id="chart-sales"', "</svg>")
    (width,) = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)"', sales)
    assert float(width) <= 48 and '<text class="value"' in sales and ">2</text>" in sales


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"rate_1": "3000", "rate_2": "2500"}, "rates sum to 5500 bps"),
        ({"rate_1": "-5"}, "non-negative"),
        ({"rate_1": "500", "rate_3": "100"}, "Level 2 is empty"),
        ({"rate_1": "1.5"}, "Level 1 is &#39;1.5&#39;"),
        ({}, "a plan has 1 to 5 levels"),
        ({"rate_1": "500", "hold_days": "400"}, "hold_days is 0 to 365"),
        ({"rate_1": "500", "hold_days": "soon"}, "Hold days must be a whole number"),
    ],
)
def test_an_invalid_plan_shows_the_error_and_adds_no_version(
    artist_visitor, cast, session, form, message
):
    before = _plan_versions(session, cast.artist.id)
    counts = row_counts(session)
    data = {"hold_days": "30", **form}
    response = artist_visitor.post(f"/dashboard/artists/{cast.artist.id}/plan", data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(r'<p id="plan-error"[^>]*>(.*?)</p>', html, re.S)
    assert error and message in error.group(1), error
    assert "hidden" not in error.group(0)
    # what the artist typed is kept, and the offending field is marked
    for name, value in data.items():
        assert f'name="{name}"' in html and f'value="{value}"' in html
    assert 'aria-invalid="true"' in html
    assert _plan_versions(session, cast.artist.id) == before
    assert row_counts(session) == counts


def test_a_valid_plan_adds_a_version_and_says_so(artist_visitor, cast, session):
    url = f"/dashboard/artists/{cast.artist.id}/plan"
    response = artist_visitor.post(
        url, {"rate_1": "700", "rate_2": " 300 ", "rate_3": "", "hold_days": "14"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/dashboard/artists/{cast.artist.id}#plan"
    assert _plan_versions(session, cast.artist.id)[-1] == (2, [700, 300], 14)
    html = artist_visitor.get(f"/dashboard/artists/{cast.artist.id}").get_data(as_text=True)
    assert "Saved reward plan version 2." in html
    assert 'id="plan-history"' in html and "700 / 300" in html
    assert 'name="rate_3" type="number"' in html  # the emptied level stays a field


def test_an_admin_may_change_an_artists_plan_from_the_dashboard(visitor, cast, session):
    visitor.sign_in(cast.admin.key)
    visitor.get(f"/dashboard/artists/{cast.other_artist.id}")
    response = visitor.post(
        f"/dashboard/artists/{cast.other_artist.id}/plan", {"rate_1": "1000", "hold_days": "0"}
    )
    assert response.status_code == 302
    assert _plan_versions(session, cast.other_artist.id)[-1] == (2, [1000], 0)


def test_recomputing_the_figures_needs_the_csrf_token(artist_visitor, cast):
    url = f"/dashboard/artists/{cast.artist.id}/insights"
    assert artist_visitor.post(url, csrf=False).status_code == 400
    response = artist_visitor.post(url)
    assert response.status_code == 302
    assert "Figures recomputed." in artist_visitor.get(response.headers["Location"]).get_data(
        as_text=True
    )


def test_the_fan_page_shows_links_counts_earnings_balances_and_the_statement_link(visitor, world):
    bob = world.fans["bob"]
    visitor.sign_in(bob.key)
    html = visitor.get(f"/dashboard/fans/{bob.id}").get_data(as_text=True)
    # share links, each with its copy button, clicks and sales
    rows = {
        code: re.search(rf'<tr data-code="{code}">(.*?)</tr>', html, re.S)
        for code in (world.links["bob"], world.links["bob-book"])
    }
    song_row = rows[world.links["bob"]]
    assert song_row is not None
    cells = re.findall(r'<td class="num">(\d+)</td>', song_row.group(1))
    assert cells == ["3", "2"]  # 3 clicks, 2 sales through bob's song link
    assert f'data-copy="http://127.0.0.1:8000/l/{world.links["bob"]}"' in song_row.group(1)
    book_row = rows[world.links["bob-book"]]
    assert book_row is not None
    assert re.findall(r'<td class="num">(\d+)</td>', book_row.group(1)) == ["0", "1"]
    # earnings by level: 1 on his own links, 3 through hal, 4 through eve, 5 through fay
    by_level = html[html.index('id="earnings-by-level"') :]
    by_level = by_level[: by_level.index("</table>")]
    assert re.findall(r"<tr><td>(\d)", by_level) == ["1", "3", "4", "5"]
    by_content = html[html.index('id="earnings-by-content"') :]
    assert "Midnight Drive" in by_content and "Neon Atlas" in by_content
    # pending vs available vs paid, in dollars and cents
    assert "Pending" in html and "Available" in html and "Paid" in html
    assert re.search(r"<dd>\d+\.\d\d USD</dd>", html)
    assert f'href="/dashboard/fans/{bob.id}/statement.csv"' in html
    assert 'id="payouts"' in html or "No payouts yet" in html


def test_the_csv_statement_downloads_with_the_session_and_adds_up_to_the_balance(
    visitor, world, session
):
    from royalties.ledger import fan_balances

    fay = world.fans["fay"]
    visitor.sign_in(fay.key)
    response = visitor.get(f"/dashboard/fans/{fay.id}/statement.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="statement-{fay.id}-all.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {"date", "kind", "currency", "amount"} <= set(rows[0])
    lines = [r for r in rows if r["kind"] not in ("opening", "closing", "total")]
    assert len(lines) >= 4  # three sales through fay's link, a reversal, deeper levels
    (total,) = [r for r in rows if r["kind"] == "total"]
    session.rollback()
    (balance,) = fan_balances(session, fay.id)
    session.rollback()
    assert int(total["pending"]) == balance.pending
    assert int(total["available"]) == balance.available
    assert int(total["paid"]) == balance.paid
    assert sum(int(r["amount"]) for r in lines) == int(total["amount"])

    # a period, named by its days: the ledger moved today, so today holds every line
    # and a period from tomorrow none, opening with the whole balance
    today = utcnow().date()
    tomorrow = today + timedelta(days=1)

    def period(**days: date) -> tuple[list[dict[str, str]], str]:
        response = visitor.get(
            f"/dashboard/fans/{fay.id}/statement.csv",
            query_string={k: v.isoformat() for k, v in days.items()},
        )
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        return rows, response.headers["Content-Disposition"]

    rows, name = period(**{"from": today, "to": today})
    assert f"-{today:%Y%m%d}-{tomorrow:%Y%m%d}.csv" in name
    assert [r for r in rows if r["kind"] not in ("opening", "closing", "total")] == lines
    rows, _ = period(**{"from": tomorrow})
    assert [r["kind"] for r in rows] == ["opening", "closing", "total"]
    assert rows[0]["amount"] == total["amount"]

    bad = visitor.get(f"/dashboard/fans/{fay.id}/statement.csv", query_string={"from": "soon"})
    assert bad.status_code == 422 and "text/html" in bad.content_type
    anonymous = visitor.client.application.test_client()
    assert anonymous.get(f"/dashboard/fans/{fay.id}/statement.csv").status_code == 302


def test_pages_hold_no_inline_script_or_style(visitor, world):
    """What the Content-Security-Policy (no 'unsafe-inline') needs of every page."""
    pages = [("login", "/dashboard/login")]
    visitor.sign_in(world.admin.key)
    pages += [
        ("admin", "/dashboard/"),
        ("artist", f"/dashboard/artists/{world.artist.id}"),
        ("fan", f"/dashboard/fans/{world.fans['bob'].id}"),
        ("error", "/dashboard/fans/fan_missing"),
    ]
    for name, path in pages:
        html = visitor.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), name
        assert "<style" not in html, name
        assert not re.search(r"\sstyle=", html), name
        assert not re.search(r"\son[a-z]+=", html), name
        assert "javascript:" not in html, name
