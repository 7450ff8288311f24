"""Fan sign-up with a sponsor ref, and profiles with downline counts."""

from __future__ import annotations

import pytest

from tests.helpers import row_counts


def test_anyone_signs_up_as_a_fan_without_a_sponsor(api):
    body = api.ok("POST", "/v1/fans", None, {"handle": "ann", "email": "Ann@Example.com"}, 201)
    assert body["sponsor_id"] is None and body["api_key"].startswith("rk_")
    profile = api.ok("GET", f"/v1/fans/{body['id']}", api.admin)
    assert profile["email"] == "ann@example.com"


def test_a_ref_with_a_fan_id_sets_the_sponsor(api):
    sponsor = api.fan()
    body = api.ok("POST", "/v1/fans", None, {"handle": "bob", "ref": sponsor.id}, 201)
    assert body["sponsor_id"] == sponsor.id


def test_an_unknown_ref_is_422_and_writes_nothing(api):
    before = row_counts(api.session)
    response = api.call("POST", "/v1/fans", None, {"handle": "bob", "ref": "fan_doesnotexist"})
    assert response.status_code == 422
    assert "ref" in response.get_json()["errors"]
    assert row_counts(api.session) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "handle"),
        ({"handle": "a"}, "handle"),
        ({"handle": "has space"}, "handle"),
        ({"handle": "x" * 65}, "handle"),
        ({"handle": "ok", "email": "not-an-email"}, "email"),
        ({"handle": "ok", "ref": "bad ref!"}, "ref"),
        ({"handle": "ok", "sponsor": "x"}, "sponsor"),
    ],
)
def test_invalid_sign_ups_are_422(api, payload, field):
    response = api.call("POST", "/v1/fans", None, payload)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_a_taken_handle_or_email_is_409(api):
    api.ok("POST", "/v1/fans", None, {"handle": "ann", "email": "ann@example.com"}, 201)
    assert api.call("POST", "/v1/fans", None, {"handle": "ann"}).status_code == 409
    dup = api.call("POST", "/v1/fans", None, {"handle": "ann2", "email": "ANN@example.com"})
    assert dup.status_code == 409


def test_profile_counts_the_downline_per_level(api):
    chain = api.chain(7)  # chain[0] is the root
    extra = api.fan(ref=chain[0].id)  # a second direct recruit of the root
    profile = api.ok("GET", f"/v1/fans/{chain[0].id}", chain[0])
    assert profile["downline"] == [
        {"level": 1, "count": 2},
        {"level": 2, "count": 1},
        {"level": 3, "count": 1},
        {"level": 4, "count": 1},
        {"level": 5, "count": 1},
    ]
    leaf = api.ok("GET", f"/v1/fans/{extra.id}", extra)
    assert leaf["sponsor_id"] == chain[0].id
    assert all(level["count"] == 0 for level in leaf["downline"])


def test_a_fan_sees_only_its_own_profile(api):
    ann, bob = api.fan(), api.fan()
    assert api.call("GET", f"/v1/fans/{bob.id}", ann).status_code == 403


def test_other_roles_cannot_read_fan_profiles(api):
    fan, artist = api.fan(), api.artist()
    assert api.call("GET", f"/v1/fans/{fan.id}", artist).status_code == 403


def test_an_unknown_fan_is_404_for_an_admin(api):
    response = api.call("GET", "/v1/fans/fan_00000000000000000000", api.admin)
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_reading_a_profile_needs_a_key(api):
    fan = api.fan()
    assert api.call("GET", f"/v1/fans/{fan.id}").status_code == 401
