"""A fan's earnings over time: the service's figures against rewards made through the
real API (a refund that reverses part of a reward, held rewards, a rejected one, two
currencies), and the fan page's charts, legends and table of those figures."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from api.web.earnings_charts import earnings_chart
from royalties.db import utcnow
from royalties.fraud.detectors import FraudConfig
from royalties.models import Reward
from royalties.services import earnings
from tests.api.test_fraud_clearing import farmed_sponsor
from tests.conftest import create_test_app
from tests.helpers import ApiDriver, buy, refund, share
from tests.web.conftest import Browser

SVG = "{http://www.w3.org/2000/svg}"
CONFIG = FraudConfig(signup_min=4, signup_share_pct=75, click_min=5)


@pytest.fixture
def fapi(engine, db_url, session):
    app = create_test_app(engine, db_url, FRAUD=CONFIG)
    return ApiDriver(app.test_client(), session)


def _item(api, artist, title, price, currency="USD"):
    body = {
        "title": title,
        "kind": "track",
        "price": price,
        "currency": currency,
        "storefront_url": "https://shop.test/item",
    }
    return api.ok("POST", "/v1/content", artist, body, 201)


def _reject(api, sale):
    api.session.rollback()
    reward_id = api.session.scalars(
        select(Reward.id).where(Reward.purchase_id == sale["id"], Reward.level == 1)
    ).one()
    api.session.rollback()
    body = {"decision": "reject", "reason": "a farm"}
    api.ok("POST", f"/v1/review/{reward_id}", api.admin, body)


def _age(api, sale, days):
    """Move a sale's rewards ``days`` back (the API records everything now)."""
    api.session.execute(
        update(Reward)
        .where(Reward.purchase_id == sale["id"])
        .values(created_at=utcnow() - timedelta(days=days))
    )
    api.session.commit()


@pytest.fixture
def earned(fapi):
    """A flagged fan (so its rewards are held for review) with level-1 rewards on one
    item and level-2 on another, in USD: 10% of 100.00 is 10.00 a sale at level 1, 5%
    at level 2; one reward half refunded, one rejected in review; and one in EUR."""
    artist, shop = fapi.artist("Nina Vale"), fapi.storefront()
    plan = {"level_rates_bps": [1000, 500], "hold_days": 0}
    fapi.ok("PUT", f"/v1/artists/{artist.id}/reward-plan", artist, plan)
    song = _item(fapi, artist, "Midnight Drive", 10000)
    book = _item(fapi, artist, "Neon Atlas", 10000)
    euro = _item(fapi, artist, "Euro Single", 2000, "EUR")
    fan = farmed_sponsor(fapi)
    kid = fapi.fan("kid", ref=fan.id)
    code = share(fapi, fan, song["id"])
    sales = {
        "first": buy(fapi, shop, song, {"email": "b1@x.io"}, share_code=code),
        "rejected": buy(fapi, shop, song, {"email": "b2@x.io"}, share_code=code),
        "refunded": buy(fapi, shop, song, {"email": "b3@x.io"}, share_code=code),
        "upline": buy(
            fapi, shop, book, {"email": "b4@x.io"}, share_code=share(fapi, kid, book["id"])
        ),
        "euro": buy(
            fapi, shop, euro, {"email": "b5@x.io"}, share_code=share(fapi, fan, euro["id"])
        ),
    }
    refund(fapi, shop, sales["refunded"]["id"], 5000)
    _reject(fapi, sales["rejected"])
    return fan, sales


def _usd(session, fan):
    session.rollback()  # no transaction of ours stays open (SQLite's write lock)
    [usd] = [s for s in earnings.over_time(session, fan.id) if s.currency == "USD"]
    session.rollback()
    return usd


def _by_day_from_the_api(api, fan):
    """The fan's rewards as the API lists them, summed per currency and UTC day the way
    a person would: what is left after refunds, nothing for a rejected reward."""
    out: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for r in api.ok("GET", f"/v1/fans/{fan.id}/rewards?limit=100", fan)["items"]:
        day = datetime.fromisoformat(r["created_at"]).date()
        counted = 0 if r["state"] == "rejected" else r["amount"] - r["reversed_amount"]
        out[r["currency"]][day] += counted
    return out


def test_the_series_counts_what_rewards_count_now_per_level_and_content(fapi, earned, session):
    fan, _sales = earned
    states = {r["state"] for r in fapi.ok("GET", f"/v1/fans/{fan.id}/rewards", fan)["items"]}
    assert states == {"held", "rejected"}  # every reward of a flagged fan waits for review
    session.rollback()
    eur, usd = earnings.over_time(session, fan.id)
    session.rollback()
    assert (eur.currency, usd.currency) == ("EUR", "USD")  # one series each, alphabetical
    today = utcnow().date()
    assert usd.grain == "day" and usd.periods == [today]
    # held 10.00 + rejected 0 + half refunded 5.00 at level 1; 5.00 at level 2
    assert usd.by_level == {1: [1500], 2: [500]}
    assert [(s.title, s.values) for s in usd.by_content] == [
        ("Midnight Drive", [1500]),
        ("Neon Atlas", [500]),
    ]
    assert usd.totals == [2000] and usd.total == 2000
    assert eur.by_level == {1: [200]} and eur.total == 200
    # the same as the tables by level, and as the API's list of rewards
    nets = {(r["currency"], r["level"]): r["net"] for r in earnings.by_level(session, fan.id)}
    session.rollback()
    assert nets == {("EUR", 1): 200, ("USD", 1): 1500, ("USD", 2): 500}
    listed = _by_day_from_the_api(fapi, fan)
    assert listed == {"USD": {today: 2000}, "EUR": {today: 200}}


def test_quiet_days_are_in_the_series_and_a_year_is_charted_by_week(fapi, earned, session):
    fan, sales = earned
    _age(fapi, sales["first"], 2)
    usd = _usd(session, fan)
    today = utcnow().date()
    assert usd.periods == [today - timedelta(days=d) for d in (2, 1, 0)]
    assert usd.by_level == {1: [1000, 0, 500], 2: [0, 0, 500]}
    assert usd.totals == [1000, 0, 1000]
    assert {d: v for d, v in zip(usd.periods, usd.totals, strict=True) if v} == {
        d: v for d, v in _by_day_from_the_api(fapi, fan)["USD"].items() if v
    }

    _age(fapi, sales["first"], 300)
    usd = _usd(session, fan)
    assert usd.grain == "week"
    assert all(p.weekday() == 0 for p in usd.periods)
    assert 43 <= len(usd.periods) <= 45
    assert usd.totals[0] == 1000 and usd.totals[-1] == 1000 and usd.total == 2000


def test_grains_and_periods():
    first = date(2026, 1, 30)
    assert earnings.grain_for(first, first) == "day"
    assert earnings.grain_for(first, first + timedelta(days=61)) == "day"
    assert earnings.grain_for(first, first + timedelta(days=62)) == "week"
    assert earnings.grain_for(first, first + timedelta(days=800)) == "month"
    months = earnings.periods_between(first, date(2026, 3, 2), "month")
    assert months == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    weeks = earnings.periods_between(date(2026, 1, 1), date(2026, 1, 12), "week")
    assert weeks == [date(2025, 12, 29), date(2026, 1, 5), date(2026, 1, 12)]


def test_the_fan_page_draws_the_charts_with_the_totals(fapi, earned):
    fan, sales = earned
    _age(fapi, sales["first"], 2)
    visitor = Browser(fapi.client.application)
    visitor.sign_in(fan.key)
    response = visitor.get(f"/dashboard/fans/{fan.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    section = html[html.index('id="earnings-over-time"') :]
    for chart_id in ("earnings-level-usd", "earnings-content-usd", "earnings-level-eur"):
        svg = ET.fromstring(re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', section).group(0))
        assert svg.get("role") == "img"
        assert svg.find(f"{SVG}title").text.startswith("Your earnings per day by")
    level = ET.fromstring(re.search(r'<svg [^>]*id="earnings-level-usd".*?</svg>', html).group(0))
    tips = sorted(t.text for t in level.iter(f"{SVG}title"))[:-1]
    today = utcnow().date()
    assert tips == sorted(
        [
            f"{today - timedelta(days=2)}, level 1: 10.00",
            f"{today}, level 1: 5.00",
            f"{today}, level 2: 5.00",
        ]
    )
    legend = re.search(r'id="legend-level-usd".*?</ul>', section, re.S).group(0)
    assert re.search(r"level 1 <span class=\"strong\">15.00 USD", legend)
    assert re.search(r"level 2 <span class=\"strong\">5.00 USD", legend)
    content = re.search(r'id="legend-content-usd".*?</ul>', section, re.S).group(0)
    assert "Midnight Drive <span" in content and "Neon Atlas <span" in content
    assert "20.00 USD in all" in section and "2.00 EUR in all" in section
    table = re.search(r'id="earnings-table-usd".*?</table>', section, re.S).group(0)
    assert table.count("<tr>") == 3  # the header and the two days with earnings


def test_one_day_is_a_bar_with_its_total_written_on_it(fapi, earned, session):
    fan, _ = earned
    usd = _usd(session, fan)
    chart = earnings_chart(usd, fmt=str)
    svg = ET.fromstring(str(chart.by_level))
    bars = [r for r in svg.iter(f"{SVG}rect") if r.get("data-stack")]
    assert [b.get("data-stack") for b in bars] == ["level 1", "level 2"]
    assert all(10 < float(b.get("width")) <= 48 for b in bars)
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "value"] == ["2000"]
