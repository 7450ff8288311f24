"""An artist manages content without curl: add and edit items and an item's own plan
with the API's validation and messages, disable a fan's link, copy the join page link."""

from __future__ import annotations

import re

import pytest

from royalties.models import Content, RewardPlan, ShareLink
from tests.helpers import share
from tests.web.conftest import Browser

GOOD = {
    "title": "Second song",
    "kind": "track",
    "price": "1500",
    "currency": "usd",
    "storefront_url": "https://shop.example/second",
}


@pytest.fixture
def artist_visitor_of(api, app):
    artist = api.artist("Lia")
    browser = Browser(app)
    browser.sign_in(artist.key)
    return artist, browser


def count(api, model) -> int:
    n = api.session.query(model).count()
    api.session.rollback()  # SQLite: an open transaction of ours would hold the write lock
    return n


def test_an_artist_adds_an_item_and_sees_it_with_the_join_page_link(api, artist_visitor_of):
    artist, browser = artist_visitor_of
    page = browser.get(f"/dashboard/artists/{artist.id}/content").get_data(as_text=True)
    assert f"http://127.0.0.1:8000/join/{artist.id}" in page and 'data-copy="' in page
    added = browser.post(f"/dashboard/artists/{artist.id}/content", GOOD)
    assert added.status_code == 303
    item_path = added.headers["Location"]
    item = browser.get(item_path).get_data(as_text=True)
    assert "Second song" in item and "follows the artist's plan" in item
    listing = browser.get(f"/dashboard/artists/{artist.id}/content").get_data(as_text=True)
    assert "Second song" in listing and "15.00 USD" in listing


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("title", "", "Length must be between 1 and 300"),
        ("price", "-5", "Not a valid"),
        ("currency", "dollars", "currency"),
        ("storefront_url", "ftp://x", "Not a valid URL"),
        ("kind", "song", "Must be one of"),
    ],
)
def test_a_bad_item_is_refused_with_the_api_s_message_and_nothing_written(
    api, artist_visitor_of, field, value, words
):
    artist, browser = artist_visitor_of
    before = count(api, Content)
    browser.get(f"/dashboard/artists/{artist.id}/content")
    response = browser.post(f"/dashboard/artists/{artist.id}/content", {**GOOD, field: value})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = re.search(rf'id="content-{field}-error">([^<]*)<', html)
    assert error is not None and words.lower() in error.group(1).lower(), html[-2000:]
    assert count(api, Content) == before


def test_an_artist_edits_an_item_and_gives_it_a_plan_of_its_own(api, artist_visitor_of):
    artist, browser = artist_visitor_of
    item = api.content(artist)
    path = f"/dashboard/content/{item['id']}"
    browser.get(path)
    saved = browser.post(path, {**GOOD, "title": "Renamed"})
    assert saved.status_code == 303
    assert api.ok("GET", f"/v1/content/{item['id']}", artist)["title"] == "Renamed"
    bad = browser.post(f"{path}/plan", {"rate_1": "6000", "hold_days": "3"})
    assert bad.status_code == 422 and "at most 5000" in bad.get_data(as_text=True)
    good = browser.post(f"{path}/plan", {"rate_1": "800", "rate_2": "100", "hold_days": "3"})
    assert good.status_code == 303
    plan = api.ok("GET", f"/v1/content/{item['id']}/reward-plan", artist)
    assert (plan["level_rates_bps"], plan["hold_days"]) == ([800, 100], 3)
    page = browser.get(path).get_data(as_text=True)
    assert "This item has its own plan" in page and "8% of every sale" in page


def test_an_artist_disables_a_fan_s_link_and_only_the_owner_may(api, app, artist_visitor_of):
    artist, browser = artist_visitor_of
    item = api.content(artist)
    fan = api.fan()
    code = share(api, fan, item["id"])
    path = f"/dashboard/content/{item['id']}"
    page = browser.get(path).get_data(as_text=True)
    assert f'data-code="{code}"' in page
    stranger = Browser(app)
    stranger.sign_in(api.artist("Other").key)
    assert stranger.get(path).status_code == 403
    assert stranger.post(f"{path}/links/{code}/disable").status_code == 403
    done = browser.post(f"{path}/links/{code}/disable")
    assert done.status_code == 303
    active = api.session.get(ShareLink, code).active
    api.session.rollback()
    assert active is False
    assert "disabled" in browser.get(path).get_data(as_text=True)
    assert count(api, RewardPlan) >= 1
