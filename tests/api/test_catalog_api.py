"""Content items and versioned reward plans, with ownership."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from royalties.models import RewardPlan
from tests.helpers import row_counts

GOOD = {
    "title": "Song",
    "kind": "track",
    "price": 1999,
    "currency": "usd",
    "storefront_url": "https://shop.test/song",
}


def test_an_artist_publishes_content_with_an_upper_case_currency(api):
    artist = api.artist()
    body = api.ok("POST", "/v1/content", artist, GOOD, 201)
    assert body["currency"] == "USD" and body["artist_id"] == artist.id and body["price"] == 1999
    assert api.ok("GET", f"/v1/content/{body['id']}", api.fan())["title"] == "Song"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "podcast"}, "kind"),
        ({"price": -1}, "price"),
        ({"price": 19.99}, "price"),
        ({"price": "1999"}, "price"),
        ({"price": True}, "price"),
        ({"price": 10**13}, "price"),
        ({"currency": "usdd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"title": ""}, "title"),
        ({"storefront_url": "javascript:alert(1)"}, "storefront_url"),
    ],
)
def test_invalid_content_is_422_and_writes_nothing(api, change, field):
    artist = api.artist()
    before = row_counts(api.session)
    response = api.call("POST", "/v1/content", artist, {**GOOD, **change})
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert row_counts(api.session) == before


@pytest.mark.parametrize("role", ["fan", "storefront", "admin"])
def test_only_artists_publish_content(api, role):
    actor = {"fan": api.fan, "storefront": api.storefront, "admin": lambda: api.admin}[role]()
    assert api.call("POST", "/v1/content", actor, GOOD).status_code == 403


def test_unknown_content_is_404(api):
    assert api.call("GET", "/v1/content/cnt_nope", api.admin).status_code == 404


def test_setting_a_plan_makes_a_new_version_and_keeps_the_old(api):
    artist = api.artist()
    v2 = api.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [1000, 500], "hold_days": 0},
    )
    v3 = api.ok("PUT", f"/v1/artists/{artist.id}/reward-plan", artist, {"level_rates_bps": [300]})
    assert (v2["version"], v3["version"]) == (2, 3)
    assert v3["hold_days"] == 30
    stored = api.session.scalars(
        select(RewardPlan).where(RewardPlan.artist_id == artist.id).order_by(RewardPlan.version)
    ).all()
    assert [p.level_rates_bps for p in stored] == [[500, 200, 100, 50, 25], [1000, 500], [300]]
    current = api.ok("GET", f"/v1/artists/{artist.id}/reward-plan", artist)
    assert current["version"] == 3


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"level_rates_bps": []}, "level_rates_bps"),
        ({"level_rates_bps": [1, 1, 1, 1, 1, 1]}, "level_rates_bps"),
        ({"level_rates_bps": [-1]}, "level_rates_bps"),
        ({"level_rates_bps": [2500, 2501]}, "level_rates_bps"),
        ({"level_rates_bps": [1.5]}, "level_rates_bps"),
        ({"level_rates_bps": [100], "hold_days": -1}, "hold_days"),
        ({"level_rates_bps": [100], "hold_days": 366}, "hold_days"),
        ({"hold_days": 3}, "level_rates_bps"),
    ],
)
def test_invalid_plans_are_422_and_make_no_version(api, plan, field):
    artist = api.artist()
    before = row_counts(api.session)
    response = api.call("PUT", f"/v1/artists/{artist.id}/reward-plan", artist, plan)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert row_counts(api.session) == before


def test_a_plan_at_exactly_fifty_percent_is_accepted(api):
    artist = api.artist()
    body = api.ok(
        "PUT", f"/v1/artists/{artist.id}/reward-plan", artist, {"level_rates_bps": [2500, 2500]}
    )
    assert body["level_rates_bps"] == [2500, 2500]


def test_an_artist_cannot_set_another_artists_plan(api):
    ada, bo = api.artist("Ada"), api.artist("Bo")
    response = api.call("PUT", f"/v1/artists/{bo.id}/reward-plan", ada, {"level_rates_bps": [1]})
    assert response.status_code == 403


def test_a_content_plan_overrides_the_artist_plan_and_is_versioned(api):
    artist = api.artist()
    item = api.content(artist)
    inherited = api.ok("GET", f"/v1/content/{item['id']}/reward-plan", artist)
    assert inherited["scope"] == f"artist:{artist.id}"
    own = api.ok(
        "PUT", f"/v1/content/{item['id']}/reward-plan", artist, {"level_rates_bps": [700, 300]}
    )
    assert own["version"] == 1 and own["content_id"] == item["id"]
    now = api.ok("GET", f"/v1/content/{item['id']}/reward-plan", artist)
    assert now["level_rates_bps"] == [700, 300]


def test_only_the_owning_artist_sets_a_content_plan(api):
    ada, bo = api.artist("Ada"), api.artist("Bo")
    item = api.content(ada)
    response = api.call(
        "PUT", f"/v1/content/{item['id']}/reward-plan", bo, {"level_rates_bps": [1]}
    )
    assert response.status_code == 403
    assert api.call("GET", f"/v1/content/{item['id']}/reward-plan", bo).status_code == 403


def test_a_plan_for_unknown_content_or_artist_is_404(api):
    artist = api.artist()
    assert (
        api.call(
            "PUT", "/v1/content/cnt_nope/reward-plan", artist, {"level_rates_bps": [1]}
        ).status_code
        == 404
    )
    assert (
        api.call(
            "PUT", "/v1/artists/art_nope/reward-plan", api.admin, {"level_rates_bps": [1]}
        ).status_code
        == 404
    )


def test_plan_endpoints_need_a_key_of_the_right_role(api):
    artist, fan = api.artist(), api.fan()
    path = f"/v1/artists/{artist.id}/reward-plan"
    assert api.call("PUT", path, None, {"level_rates_bps": [1]}).status_code == 401
    assert api.call("PUT", path, fan, {"level_rates_bps": [1]}).status_code == 403
