"""Artists and storefronts: admin-only creation, keys shown once, stored hashed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from royalties.keys import hash_key
from royalties.models import ApiKey
from tests.helpers import row_counts


def test_admin_creates_an_artist_and_gets_its_key_once(api):
    body = api.ok("POST", "/v1/artists", api.admin, {"name": "Ada"}, 201)
    assert body["name"] == "Ada" and body["id"].startswith("art_")
    stored = api.session.scalars(select(ApiKey).where(ApiKey.owner_id == body["id"])).one()
    assert stored.role == "artist"
    assert stored.key_hash == hash_key(body["api_key"]) != body["api_key"]


def test_a_new_artist_starts_with_the_default_plan_as_version_1(api):
    artist = api.artist()
    plan = api.ok("GET", f"/v1/artists/{artist.id}/reward-plan", artist)
    assert plan["version"] == 1
    assert plan["level_rates_bps"] == [500, 200, 100, 50, 25]
    assert plan["hold_days"] == 30


def test_admin_creates_a_storefront(api):
    body = api.ok(
        "POST", "/v1/storefronts", api.admin, {"name": "Shop", "base_url": "https://shop.test"}, 201
    )
    assert body["id"].startswith("sf_") and body["api_key"].startswith("rk_")


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/artists", {}, "name"),
        ("/v1/artists", {"name": ""}, "name"),
        ("/v1/artists", {"name": "x" * 201}, "name"),
        ("/v1/artists", {"name": "bad\x00name"}, "name"),
        ("/v1/artists", {"name": 7}, "name"),
        ("/v1/artists", {"name": "Ada", "extra": 1}, "extra"),
        ("/v1/storefronts", {"name": "Shop"}, "base_url"),
        ("/v1/storefronts", {"name": "Shop", "base_url": "not a url"}, "base_url"),
        ("/v1/storefronts", {"name": "Shop", "base_url": "ftp://x.test"}, "base_url"),
    ],
)
def test_invalid_bodies_are_422_with_field_errors_and_write_nothing(api, path, payload, field):
    before = row_counts(api.session)
    response = api.call("POST", path, api.admin, payload)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["code"] == "invalid" and field in problem["errors"]
    assert row_counts(api.session) == before


@pytest.mark.parametrize("path", ["/v1/artists", "/v1/storefronts"])
def test_only_admins_create_principals(api, path):
    artist = api.artist()
    response = api.call("POST", path, artist, {"name": "X", "base_url": "https://x.test"})
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer rk_nope", "Basic abc", "Bearer " + "rk_" + "a" * 300, "rk_x"],
)
def test_missing_or_bad_keys_are_401(api, header):
    headers = {"Authorization": header} if header else {}
    response = api.client.post("/v1/artists", json={"name": "X"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["code"] == "unauthorized"


def test_malformed_json_is_400(api):
    response = api.client.post(
        "/v1/artists",
        data="{not json",
        headers={"Authorization": f"Bearer {api.admin.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_unknown_routes_and_methods_are_problems(api):
    missing = api.client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    wrong = api.client.delete("/v1/artists")
    assert wrong.status_code == 405 and wrong.mimetype == "application/problem+json"


def test_an_unexpected_error_is_a_bare_500_without_internals(app, api):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail: password=hunter2")

    response = api.client.get("/boom")
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    text = response.get_data(as_text=True)
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
