"""API keys: every principal rotates its own key; admins list and revoke any key; a revoked
key is refused from the very next request."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from royalties.keys import hash_key
from royalties.models import ApiKey
from tests.helpers import Actor, ApiDriver, row_counts

KEY_FIELDS = {"id", "prefix", "role", "owner_id", "created_at", "revoked_at"}


def principal(api: ApiDriver, role: str) -> tuple[Actor, str]:
    """A principal of ``role`` and a request only that principal may make."""
    if role == "admin":
        return api.admin, "/v1/keys"
    if role == "artist":
        artist = api.artist()
        return artist, f"/v1/artists/{artist.id}/reward-plan"
    if role == "storefront":
        # any storefront-only call: an unknown purchase is 404 for a valid storefront key
        return api.storefront(), "/v1/purchases/pur_00000000000000000000"
    fan = api.fan()
    return fan, f"/v1/fans/{fan.id}"


def status(api: ApiDriver, actor: Actor, path: str) -> int:
    return api.call("GET", path, actor).status_code


def keys_of(api: ApiDriver, owner_id: str | None) -> list[dict[str, Any]]:
    query = f"?owner_id={owner_id}" if owner_id else ""
    return api.ok("GET", f"/v1/keys{query}", api.admin)["items"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ["fan", "artist", "storefront", "admin"])
def test_rotating_a_key_stops_the_old_key_at_once_and_the_new_key_keeps_role_and_owner(api, role):
    actor, path = principal(api, role)
    allowed = status(api, actor, path)
    assert allowed in {200, 404}
    rotated = api.ok("POST", "/v1/keys/rotate", actor, status=201)
    assert rotated["role"] == role and rotated["owner_id"] == actor.id
    assert rotated["api_key"].startswith("rk_") and rotated["api_key"] != actor.key
    assert rotated["prefix"] == rotated["api_key"][:10]
    new = Actor(actor.id, rotated["api_key"])
    old_response = api.call("GET", path, actor)
    assert old_response.status_code == 401
    assert old_response.get_json()["code"] == "unauthorized"
    assert status(api, new, path) == allowed
    stored = api.session.get(ApiKey, rotated["key_id"])
    assert stored is not None and stored.key_hash == hash_key(rotated["api_key"])
    old = api.session.get(ApiKey, rotated["replaced_key_id"])
    assert old is not None and old.revoked_at is not None and old.key_hash == hash_key(actor.key)
    api.session.rollback()


def test_a_rotated_key_cannot_be_rotated_again(api):
    fan = api.fan()
    api.ok("POST", "/v1/keys/rotate", fan, status=201)
    before = row_counts(api.session)
    assert api.call("POST", "/v1/keys/rotate", fan).status_code == 401
    assert row_counts(api.session) == before


def test_concurrent_rotations_of_one_key_leave_exactly_one_successor(api):
    fan = api.fan()
    api.session.rollback()
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def rotate() -> None:
        client = api.client.application.test_client()
        barrier.wait()
        response = client.post("/v1/keys/rotate", headers={"Authorization": f"Bearer {fan.key}"})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 401, 401, 401]
    live = api.session.scalars(
        select(ApiKey).where(ApiKey.owner_id == fan.id, ApiKey.revoked_at.is_(None))
    ).all()
    assert len(live) == 1
    api.session.rollback()


def test_an_admin_revokes_a_storefront_key_and_it_is_refused_at_once(api):
    shop, path = principal(api, "storefront")
    assert status(api, shop, path) == 404
    (listed,) = keys_of(api, shop.id)
    revoked = api.ok("POST", f"/v1/keys/{listed['id']}/revoke", api.admin)
    assert revoked["id"] == listed["id"] and revoked["revoked_at"] is not None
    assert set(revoked) == KEY_FIELDS
    assert status(api, shop, path) == 401
    # revoking again changes nothing
    again = api.ok("POST", f"/v1/keys/{listed['id']}/revoke", api.admin)
    assert again["revoked_at"] == revoked["revoked_at"]
    assert keys_of(api, shop.id)[0]["revoked_at"] == revoked["revoked_at"]


def test_non_admins_can_neither_revoke_nor_list_keys(api):
    fan, shop, artist = api.fan(), api.storefront(), api.artist()
    (shop_key,) = keys_of(api, shop.id)
    before = row_counts(api.session)
    for actor in (fan, shop, artist):
        revoke = api.call("POST", f"/v1/keys/{shop_key['id']}/revoke", actor)
        assert revoke.status_code == 403 and revoke.get_json()["code"] == "forbidden"
        assert api.call("GET", "/v1/keys", actor).status_code == 403
        assert api.call("GET", f"/v1/keys?owner_id={fan.id}", actor).status_code == 403
    assert row_counts(api.session) == before
    assert status(api, shop, "/v1/purchases/pur_00000000000000000000") == 404


@pytest.mark.parametrize("key_id", ["key_00000000000000000000", "nonsense", "k" * 300])
def test_revoking_an_unknown_key_is_404(api, key_id):
    response = api.call("POST", f"/v1/keys/{key_id}/revoke", api.admin)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer rk_unknown"},
    ],
)
def test_rotating_without_a_valid_key_is_401_and_writes_nothing(api, headers):
    before = row_counts(api.session)
    response = api.call("POST", "/v1/keys/rotate", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert row_counts(api.session) == before


@pytest.mark.parametrize("length", [256, 10_000])
def test_an_over_long_key_is_401(api, length):
    fan = api.fan()
    long_key = Actor(fan.id, fan.key + "x" * (length - len(fan.key)))
    assert len(long_key.key) == length
    assert api.call("GET", f"/v1/fans/{fan.id}", long_key).status_code == 401
    assert api.call("POST", "/v1/keys/rotate", long_key).status_code == 401


def test_listing_keys_shows_ids_prefixes_and_dates_never_hashes_or_keys(api):
    fan = api.fan()
    rotated = api.ok("POST", "/v1/keys/rotate", fan, status=201)
    response = api.call("GET", f"/v1/keys?owner_id={fan.id}", api.admin)
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [k["id"] for k in items] == [rotated["key_id"], rotated["replaced_key_id"]]
    assert all(set(k) == KEY_FIELDS for k in items)
    assert [k["revoked_at"] is None for k in items] == [True, False]
    assert {k["role"] for k in items} == {"fan"} and {k["owner_id"] for k in items} == {fan.id}
    text = response.get_data(as_text=True)
    for secret in (fan.key, rotated["api_key"], hash_key(fan.key), hash_key(rotated["api_key"])):
        assert secret not in text


def test_the_key_list_is_paginated_newest_first(api):
    api.artist(), api.storefront(), api.fan()
    everything = keys_of(api, None)
    assert len(everything) == 4  # the admin's own key too
    seen, cursor = [], None
    while True:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = api.ok("GET", f"/v1/keys{query}", api.admin)
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [k["id"] for k in everything]
    bad = api.call("GET", "/v1/keys?cursor=key_00000000000000000000", api.admin)
    assert bad.status_code == 422 and "cursor" in bad.get_json()["errors"]


def test_an_admin_can_revoke_its_own_key(api):
    (own,) = keys_of(api, None)
    api.ok("POST", f"/v1/keys/{own['id']}/revoke", api.admin)
    assert api.call("GET", "/v1/keys", api.admin).status_code == 401
