"""Fan statements over HTTP: every reward and reversal as a line, totals that equal the
balance endpoint, CSV, periods and roles."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from royalties.services import statements
from tests.helpers import buy, refund, share


@pytest.fixture
def spec9(api):
    """SPEC section 9: a 1999 sale through F6's link, then a refund of 1000."""
    artist, shop = api.artist(), api.storefront()
    item = api.content(artist)
    fans = api.chain(6)
    sale = buy(
        api, shop, item, {"email": "b@example.com"}, share_code=share(api, fans[-1], item["id"])
    )
    refund(api, shop, sale["id"], 1000)
    return {"artist": artist, "shop": shop, "item": item, "fans": fans, "sale": sale}


def statement_of(api, fan, as_=None, **params):
    return api.ok("GET", f"/v1/fans/{fan.id}/statement", as_ or fan, query_string=params)


def balance_of(api, fan):
    return api.ok("GET", f"/v1/fans/{fan.id}/balance", fan)["balances"]


def test_a_statement_lists_the_reward_and_its_reversal_and_totals_equal_the_balance(api, spec9):
    f6 = spec9["fans"][-1]
    body = statement_of(api, f6)
    assert body["fan_id"] == f6.id and body["from"] is None and body["to"] is None
    lines = [
        (line["kind"], line["amount"], line["pending"], line["level"], line["purchase_id"])
        for line in body["lines"]
    ]
    sale = spec9["sale"]["id"]
    assert lines == [("reward", 99, 99, 1, sale), ("reversal", -49, -49, 1, sale)]
    assert {line["content_id"] for line in body["lines"]} == {spec9["item"]["id"]}
    assert {line["content_title"] for line in body["lines"]} == {"Song"}
    assert {line["state"] for line in body["lines"]} == {"pending"}
    assert (
        body["totals"]
        == balance_of(api, f6)
        == [{"currency": "USD", "pending": 50, "available": 0, "paid": 0}]
    )
    assert body["closing"] == body["totals"]
    assert body["opening"] == [{"currency": "USD", "pending": 0, "available": 0, "paid": 0}]
    f2 = spec9["fans"][1]
    assert [line["amount"] for line in statement_of(api, f2)["lines"]] == [4, -2]
    assert statement_of(api, spec9["fans"][0])["lines"] == []  # F1 is level 6


def test_a_statement_matures_due_rewards_first_and_explains_the_move(api, spec9):
    f6 = spec9["fans"][-1]
    later = datetime.now(UTC) + timedelta(days=31)
    body = statements.fan_statement(api.session, f6.id, now=later)
    assert [(line["kind"], line["pending"], line["available"]) for line in body["lines"]] == [
        ("reward", 99, 0),
        ("reversal", -49, 0),
        ("matured", -50, 50),
    ]
    assert body["lines"][-1]["amount"] == 0 and body["lines"][-1]["state"] == "available"
    assert body["totals"] == balance_of(api, f6)
    assert body["totals"] == [{"currency": "USD", "pending": 0, "available": 50, "paid": 0}]


def test_a_period_keeps_its_lines_and_opening_plus_lines_make_the_closing(api, spec9):
    f6 = spec9["fans"][-1]
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = statement_of(api, f6, **{"from": future})
    assert later["lines"] == [] and later["opening"] == later["closing"] == later["totals"]
    past = statement_of(api, f6, to="2000-01-01")
    assert past["lines"] == [] and past["closing"][0]["pending"] == 0
    assert past["totals"][0]["pending"] == 50
    both = statement_of(api, f6, **{"from": "2000-01-01", "to": future})
    assert len(both["lines"]) == 2 and both["from"] == "2000-01-01T00:00:00+00:00"


def test_the_csv_statement_has_a_header_a_row_per_line_and_the_totals(api, spec9):
    f6 = spec9["fans"][-1]
    response = api.call("GET", f"/v1/fans/{f6.id}/statement", f6, query_string={"format": "csv"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"statement-{f6.id}-" in disposition
    assert disposition.endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["kind"], r["amount"]) for r in rows] == [
        ("reward", "99"),
        ("reversal", "-49"),
        ("opening", "0"),
        ("closing", "50"),
        ("total", "50"),
    ]
    assert rows[0]["purchase_id"] == spec9["sale"]["id"] and rows[0]["level"] == "1"
    assert rows[-1]["currency"] == "USD" and rows[-1]["pending"] == "50"


def test_accept_text_csv_asks_for_csv_and_format_json_overrides_it(api, spec9):
    f6 = spec9["fans"][-1]
    path = f"/v1/fans/{f6.id}/statement"
    as_csv = api.call("GET", path, f6, headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.get_data(as_text=True).splitlines()[0].startswith("date,kind,currency,amount")
    as_json = api.call(
        "GET", path, f6, headers={"Accept": "text/csv"}, query_string={"format": "json"}
    )
    assert as_json.mimetype == "application/json" and len(as_json.get_json()["lines"]) == 2


def test_a_title_that_looks_like_a_formula_is_defused_in_csv(api):
    artist, shop = api.artist(), api.storefront()
    item = api.ok(
        "POST",
        "/v1/content",
        artist,
        {
            "title": '=HYPERLINK("http://evil.test")',
            "kind": "track",
            "price": 1000,
            "currency": "USD",
            "storefront_url": "https://shop.test/x",
        },
        201,
    )
    fan = api.fan()
    buy(api, shop, item, {"email": "x@example.com"}, share_code=share(api, fan, item["id"]))
    response = api.call("GET", f"/v1/fans/{fan.id}/statement", fan, query_string={"format": "csv"})
    row = next(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert row["content_title"] == '\'=HYPERLINK("http://evil.test")'


def test_only_that_fan_or_an_admin_may_read_a_statement(api, spec9):
    f6 = spec9["fans"][-1]
    path = f"/v1/fans/{f6.id}/statement"
    assert api.call("GET", path, None).status_code == 401
    assert api.call("GET", path, spec9["fans"][0]).status_code == 403
    assert api.call("GET", path, spec9["artist"]).status_code == 403
    assert api.call("GET", path, spec9["shop"]).status_code == 403
    assert statement_of(api, f6, as_=api.admin)["totals"][0]["pending"] == 50
    unknown = api.call("GET", "/v1/fans/fan_doesnotexist/statement", api.admin)
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-02-30"}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": "2026-03-01", "to": "2026-02-01T00:00:00Z"}, "to"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_statement_parameters_are_422(api, spec9, params, field):
    f6 = spec9["fans"][-1]
    response = api.call("GET", f"/v1/fans/{f6.id}/statement", f6, query_string=params)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
