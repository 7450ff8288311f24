"""Artist insights and the plan simulator over HTTP: figures, cache, periods, roles."""

from __future__ import annotations

import pytest

from tests.helpers import buy, refund, share


@pytest.fixture
def sold(api):
    """SPEC 9's chain selling through F6's link twice, plus one direct sale."""
    artist, shop = api.artist(), api.storefront()
    item = api.content(artist)
    fans = api.chain(6)
    code = share(api, fans[-1], item["id"])
    first = buy(api, shop, item, {"email": "b1@example.com"}, share_code=code)
    buy(api, shop, item, {"email": "b2@example.com"}, share_code=code)
    buy(api, shop, item, {"email": "b3@example.com"}, amount=500)
    refund(api, shop, first["id"], 1000)
    return {"artist": artist, "shop": shop, "item": item, "fans": fans, "code": code}


def insights_of(api, artist, as_=None, **params):
    return api.ok("GET", f"/v1/artists/{artist.id}/insights", as_ or artist, query_string=params)


def test_an_artist_sees_its_top_fans_graph_and_program_return(api, sold):
    body = insights_of(api, sold["artist"])
    f6 = sold["fans"][-1]
    assert body["artist_id"] == sold["artist"].id
    assert (body["graph"]["fans"], body["graph"]["edges"], body["graph"]["depth"]) == (9, 7, 6)
    row = body["top"]["attributed_revenue"][0]
    assert (row["fan_id"], row["attributed_revenue"], row["rewards"]) == (f6.id, 2998, 149)
    assert isinstance(row["pagerank"], str) and isinstance(row["betweenness"], str)
    assert body["roi"]["attributed_revenue"] == 2998 and body["roi"]["direct_revenue"] == 500
    assert body["roi"]["rewards"] == 257 and body["roi"]["return_bps"] == 2741 * 10000 // 257
    assert sum(point["sales"] for point in body["series"]) == 3
    assert len(body["picture"]["nodes"]) == 9 and len(body["picture"]["edges"]) == 7
    assert insights_of(api, sold["artist"], as_=api.admin)["roi"] == body["roi"]


def test_insights_are_cached_recomputed_after_a_purchase_and_refresh_forces_them(api, sold):
    first = insights_of(api, sold["artist"])
    assert insights_of(api, sold["artist"])["computed_at"] == first["computed_at"]
    buy(api, sold["shop"], sold["item"], {"email": "b4@example.com"}, share_code=sold["code"])
    second = insights_of(api, sold["artist"])
    assert second["computed_at"] != first["computed_at"]
    assert second["roi"]["attributed_sales"] == 3
    assert insights_of(api, sold["artist"])["computed_at"] == second["computed_at"]
    forced = insights_of(api, sold["artist"], refresh="true")
    assert forced["computed_at"] != second["computed_at"]


def test_from_and_to_narrow_the_program_return_and_the_series(api, sold):
    today = insights_of(api, sold["artist"])["series"][-1]["date"]
    empty = insights_of(api, sold["artist"], to=today)
    assert empty["roi"]["attributed_sales"] == 0 and empty["roi"]["to"].startswith(today)
    assert empty["series"] == []
    whole = insights_of(api, sold["artist"], **{"from": today, "to": "2999-01-01T00:00:00Z"})
    assert whole["roi"]["attributed_sales"] == 2 and [p["date"] for p in whole["series"]] == [today]
    assert whole["graph"]["fans"] == 9  # the graph always covers the whole history


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"refresh": "maybe"}, "refresh"),
        ({"from": "0001-01-01T00:00:00+05:00"}, "from"),
    ],
)
def test_bad_dates_or_parameters_are_422_with_the_field(api, sold, params, field):
    path = f"/v1/artists/{sold['artist'].id}/insights"
    response = api.call("GET", path, sold["artist"], query_string=params)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"]


def test_only_that_artist_or_an_admin_may_read_insights(api, sold):
    path = f"/v1/artists/{sold['artist'].id}/insights"
    assert api.call("GET", path, None).status_code == 401
    assert api.call("GET", path, api.artist("Other")).status_code == 403
    assert api.call("GET", path, sold["fans"][0]).status_code == 403
    assert api.call("GET", path, sold["shop"]).status_code == 403
    unknown = api.call("GET", "/v1/artists/art_doesnotexist/insights", api.admin)
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "not_found"


def test_the_simulator_prices_another_plan_on_the_recorded_sales(api, sold):
    path = f"/v1/artists/{sold['artist'].id}/insights/simulate"
    body = api.ok("GET", path, sold["artist"], query_string={"level_rates_bps": "1000,500"})
    assert body["level_rates_bps"] == [1000, 500] and body["sales"] == 3
    assert body["per_level"] == [
        {"level": 1, "amount": 199 * 2, "count": 2},
        {"level": 2, "amount": 99 * 2, "count": 2},
    ]
    assert (body["total_rewards"], body["actual_rewards"], body["difference"]) == (
        596,
        340,
        256,
    )
    assert api.ok("GET", path, api.admin, query_string={"level_rates_bps": "0"})["sales"] == 3


@pytest.mark.parametrize("rates", ["3000,3000", "100,100,100,100,100,100", "-5", "", "1,x"])
def test_an_invalid_simulated_plan_is_422_naming_level_rates_bps(api, sold, rates):
    path = f"/v1/artists/{sold['artist'].id}/insights/simulate"
    response = api.call("GET", path, sold["artist"], query_string={"level_rates_bps": rates})
    assert response.status_code == 422, response.get_json()
    assert "level_rates_bps" in response.get_json()["errors"]


def test_the_simulator_needs_a_plan_and_the_owning_artist(api, sold):
    path = f"/v1/artists/{sold['artist'].id}/insights/simulate"
    assert api.call("GET", path, sold["artist"]).status_code == 422
    query = {"level_rates_bps": "500"}
    assert api.call("GET", path, None, query_string=query).status_code == 401
    assert api.call("GET", path, api.artist("Other"), query_string=query).status_code == 403
    unknown = "/v1/artists/art_doesnotexist/insights/simulate"
    assert api.call("GET", unknown, api.admin, query_string=query).status_code == 404


def test_the_openapi_document_describes_insights_and_the_csv_statement(client):
    spec = client.get("/openapi.json").get_json()
    paths = spec["paths"]
    assert "InsightsOut" in str(paths["/v1/artists/{artist_id}/insights"]["get"]["responses"])
    simulate = paths["/v1/artists/{artist_id}/insights/simulate"]["get"]
    assert [p["name"] for p in simulate["parameters"]] == ["level_rates_bps"]
    statement = paths["/v1/fans/{fan_id}/statement"]["get"]["responses"]["200"]["content"]
    assert set(statement) == {"application/json", "text/csv"}
