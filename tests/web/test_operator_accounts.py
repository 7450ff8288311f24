"""The operator makes artists and storefronts and manages API keys in the dashboard: a new
key is shown once, on the answer page only, and works; bad input writes nothing; a
rotated key's successor works and the old one is refused; a revoked key is refused."""

from __future__ import annotations

import re

import pytest

from royalties.models import Artist, Storefront
from tests.web.conftest import Browser


@pytest.fixture
def operator(api, app):
    browser = Browser(app)
    browser.sign_in(api.admin.key)
    return browser


def key_on(html: str, element: str) -> str:
    match = re.search(rf'<code class="share-url" id="{element}">(rk_\w+)</code>', html)
    assert match is not None, html[-1500:]
    return match.group(1)


def count(api, model) -> int:
    n = api.session.query(model).count()
    api.session.rollback()
    return n


def test_a_new_storefront_s_key_is_shown_once_and_works(api, operator):
    operator.get("/dashboard/admin/accounts")
    made = operator.post(
        "/dashboard/admin/accounts",
        {"kind": "storefront", "name": "Shop", "base_url": "https://shop.example"},
    )
    assert made.status_code == 200
    key = key_on(made.get_data(as_text=True), "made-key")
    assert key not in operator.get("/dashboard/admin/accounts").get_data(as_text=True)
    assert (
        api.call("GET", "/v1/keys", None, headers={"Authorization": f"Bearer {key}"}).status_code
        == 403
    )  # a storefront's key: authenticated, not an admin


def test_a_new_artist_with_an_email_can_open_its_page(api, app, operator):
    operator.get("/dashboard/admin/accounts")
    made = operator.post(
        "/dashboard/admin/accounts", {"kind": "artist", "name": "Ines", "email": "ines@x.io"}
    )
    key = key_on(made.get_data(as_text=True), "made-key")
    artist = Browser(app)
    assert artist.sign_in(key).status_code == 302
    api.session.rollback()
    assert api.session.query(Artist.email).filter_by(name="Ines").scalar() == "ines@x.io"
    api.session.rollback()


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"kind": "artist", "name": ""}, "artist-name"),
        ({"kind": "artist", "name": "X", "email": "nope"}, "artist-email"),
        ({"kind": "storefront", "name": "S", "base_url": "ftp://x"}, "store-base_url"),
    ],
)
def test_a_bad_account_form_says_what_is_wrong_and_makes_nothing(api, operator, form, field):
    before = count(api, Artist), count(api, Storefront)
    operator.get("/dashboard/admin/accounts")
    response = operator.post("/dashboard/admin/accounts", form)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.get_data(as_text=True)
    assert (count(api, Artist), count(api, Storefront)) == before


def test_rotating_a_key_shows_its_successor_once_and_revoking_refuses_it(api, operator):
    fan = api.fan()
    page = operator.get("/dashboard/admin/keys").get_data(as_text=True)
    match = re.search(
        r'<tr data-key="(key_\w+)"><td><code>key_\w+</code> <span class="muted">(\w+)…', page
    )
    assert match is not None
    fan_key_id = next(
        k["id"] for k in api.ok("GET", f"/v1/keys?owner_id={fan.id}", api.admin)["items"]
    )
    rotated = operator.post(f"/dashboard/admin/keys/{fan_key_id}/rotate")
    new_key = key_on(rotated.get_data(as_text=True), "rotated-key")
    assert api.call("GET", f"/v1/fans/{fan.id}/balance", fan).status_code == 401  # old key
    fresh = api.call(
        "GET", f"/v1/fans/{fan.id}/balance", None, headers={"Authorization": f"Bearer {new_key}"}
    )
    assert fresh.status_code == 200
    successor = next(
        k["id"]
        for k in api.ok("GET", f"/v1/keys?owner_id={fan.id}", api.admin)["items"]
        if k["revoked_at"] is None
    )
    operator.get("/dashboard/admin/keys")
    assert operator.post(f"/dashboard/admin/keys/{successor}/revoke").status_code == 303
    gone = api.call(
        "GET", f"/v1/fans/{fan.id}/balance", None, headers={"Authorization": f"Bearer {new_key}"}
    )
    assert gone.status_code == 401


def test_only_the_operator_reaches_accounts_and_keys(api, app):
    fan = Browser(app)
    fan.sign_in(api.fan().key)
    assert fan.get("/dashboard/admin/accounts").status_code == 403
    assert fan.get("/dashboard/admin/keys").status_code == 403
