"""The fan's side in the dashboard, without curl: an artist's public join page (with a
``?ref=`` code setting the sponsor, SPEC 2), "Get my link" with a QR code, rewards on
their way with the day they become available, and why the next run would not pay."""

from __future__ import annotations

import re

import pytest

from royalties.models import Fan, ShareLink
from tests.helpers import buy, share
from tests.web.conftest import Browser


@pytest.fixture
def stage(api):
    artist, shop = api.artist("Ada"), api.storefront()
    api.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [500, 250, 25], "hold_days": 7},
    )
    item = api.content(artist, price=2000)
    return artist, shop, item


def join(visitor: Browser, artist_id: str, ref: str | None = None, **form: str):
    path = f"/join/{artist_id}" + (f"?ref={ref}" if ref else "")
    visitor.get(path)
    return visitor.post(path, form)


def test_the_join_page_says_who_the_artist_is_their_work_and_the_plan_in_words(visitor, stage):
    artist, _, _ = stage
    html = visitor.get(f"/join/{artist.id}").get_data(as_text=True)
    assert "Ada" in html and "Song" in html and "20.00 USD" in html
    words = re.sub(r"\s+", " ", html[html.index('id="plan-words"') :].split("</ul>")[0])
    assert "5% of every sale you bring in with your link" in words
    assert "2.5% of every sale a fan you brought in brings in" in words
    assert "0.25% of every sale a fan two steps below you brings in" in words
    assert "available 7 days after the sale" in words
    assert visitor.get("/join/art_nosuchartist00000000").status_code == 404


def test_joining_with_a_ref_code_makes_a_sponsored_fan_and_signs_them_in(api, visitor, stage):
    artist, _, item = stage
    ann = api.fan(handle="ann")
    code = share(api, ann, item["id"])
    response = join(visitor, artist.id, code, handle="newbie", email="new@x.io")
    assert response.status_code == 302
    api.session.rollback()
    fan_id, sponsor_id, email = (
        api.session.query(Fan.id, Fan.sponsor_id, Fan.email).filter_by(handle="newbie").one()
    )
    api.session.rollback()  # SQLite: an open transaction of ours would hold the write lock
    assert (sponsor_id, email) == (ann.id, "new@x.io")
    assert response.headers["Location"] == f"/dashboard/fans/{fan_id}?artist={artist.id}"
    page = visitor.get(response.headers["Location"]).get_data(as_text=True)
    assert "newbie" in page and "brought in by <strong>ann</strong>" in page
    assert "Get my link" in page  # the artist's catalogue, ready to share


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"handle": "x", "email": "a@x.io"}, "handle", "2 to 64"),
        ({"handle": "good_name", "email": "not-an-email"}, "email", "valid email"),
        ({"handle": "good_name", "email": ""}, "email", "address you sign in with"),
    ],
)
def test_a_bad_join_form_says_what_is_wrong_and_writes_nothing(
    api, visitor, stage, form, field, words
):
    artist, _, _ = stage
    before = api.session.query(Fan).count()
    api.session.rollback()
    response = join(visitor, artist.id, **form)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="join-{field}-error"' in html and words in html
    api.session.rollback()
    assert api.session.query(Fan).count() == before


def test_a_taken_handle_is_refused_with_a_message(api, visitor, stage):
    artist, _, _ = stage
    api.fan(handle="taken")
    response = join(visitor, artist.id, handle="taken", email="t2@x.io")
    assert response.status_code == 409
    assert "taken" in response.get_data(as_text=True)


def test_get_my_link_makes_a_link_with_a_qr_code_only_its_fan_and_admins_see(
    api, app, visitor, stage
):
    artist, _, item = stage
    join(visitor, artist.id, handle="sharer", email="s@x.io")
    api.session.rollback()
    fan_id = api.session.query(Fan.id).filter_by(handle="sharer").scalar()
    api.session.rollback()
    visitor.get(f"/dashboard/fans/{fan_id}?artist={artist.id}")
    made = visitor.post(
        f"/dashboard/fans/{fan_id}/links", {"content_id": item["id"], "artist": artist.id}
    )
    assert made.status_code == 303
    api.session.rollback()
    [code] = [row.code for row in api.session.query(ShareLink.code).filter_by(fan_id=fan_id)]
    api.session.rollback()
    assert made.headers["Location"].endswith(f"#link-{code}")
    page = visitor.get(f"/dashboard/fans/{fan_id}").get_data(as_text=True)
    assert f'src="/dashboard/links/{code}/qr.svg"' in page
    qr = visitor.get(f"/dashboard/links/{code}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert qr.get_data(as_text=True).lstrip().startswith("<svg")
    other = Browser(app)
    other.sign_in(api.fan().key)
    assert other.get(f"/dashboard/links/{code}/qr.svg").status_code == 403
    admin = Browser(app)
    admin.sign_in(api.admin.key)
    assert admin.get(f"/dashboard/links/{code}/qr.svg").status_code == 200
    assert (
        admin.post(f"/dashboard/fans/{fan_id}/links", {"content_id": item["id"]}).status_code == 403
    )
    bad = visitor.post(f"/dashboard/fans/{fan_id}/links", {"content_id": ""})
    assert bad.status_code == 422 and "Choose a content item" in bad.get_data(as_text=True)


def test_the_fan_page_lists_rewards_on_their_way_and_why_the_next_run_will_not_pay(
    api, visitor, stage
):
    _, shop, item = stage
    fan = api.fan(handle="earner")
    buy(api, shop, item, {"email": "b1@x.io"}, amount=2000, share_code=share(api, fan, item["id"]))
    visitor.sign_in(fan.key)
    html = visitor.get(f"/dashboard/fans/{fan.id}").get_data(as_text=True)
    coming = html[html.index('id="coming"') :].split("</table>")[0]
    assert "1.00 USD" in coming and re.search(r"on \d{4}-\d\d-\d\d", coming)  # 7 days' hold
    assert "Not paid in the next payout run" not in html  # nothing available yet
    api.ok(
        "PUT",
        f"/v1/content/{item['id']}/reward-plan",
        api.session.get(
            __import__("royalties.models", fromlist=["Artist"]).Artist, item["artist_id"]
        )
        and stage[0],
        {"level_rates_bps": [500], "hold_days": 0},
    )
    buy(api, shop, item, {"email": "b2@x.io"}, amount=2000, share_code=share(api, fan, item["id"]))
    html = visitor.get(f"/dashboard/fans/{fan.id}").get_data(as_text=True)
    outlook = re.search(r'class="notice notice-error payout-outlook"[^>]*>(.*?)</p>', html, re.S)
    assert outlook is not None
    assert "under the minimum of 10.00 USD" in outlook.group(1)
