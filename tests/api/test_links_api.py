"""Share links over HTTP: creating, reading, disabling, and the public click redirect."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from sqlalchemy import event, select

from royalties.models import Click, ShareLink
from tests.helpers import row_counts

CODE_SHAPE = re.compile(r"^[0-9a-hjkmnp-tv-z]{10}$")  # the id alphabet: no i, l, o, u


def publish(api, artist, storefront_url="https://shop.test/song"):
    body = {
        "title": "Song",
        "kind": "track",
        "price": 1999,
        "currency": "USD",
        "storefront_url": storefront_url,
    }
    return api.ok("POST", "/v1/content", artist, body, 201)


def share(api, fan, content) -> dict[str, Any]:
    return api.ok("POST", "/v1/share-links", fan, {"content_id": content["id"]}, 201)


def click(api, code, *, addr="203.0.113.7", agent="Mozilla/5.0 (test)"):
    return api.call(
        "GET", f"/l/{code}", None, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": addr}
    )


def clicks_on(api, code):
    rows = api.session.scalars(select(Click).where(Click.code == code)).all()
    api.session.rollback()
    return rows


@pytest.fixture
def statements(engine):
    """Every SQL statement the app sends while the test runs, in order."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement.strip())

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


# creating ------------------------------------------------------------------------


def test_a_fan_creates_a_share_link_with_a_public_url(api, app):
    app.config["PUBLIC_BASE_URL"] = "https://fans.example/"
    artist, fan = api.artist(), api.fan()
    item = publish(api, artist)
    body = share(api, fan, item)
    assert CODE_SHAPE.match(body["code"])
    assert body["url"] == f"https://fans.example/l/{body['code']}"
    assert (body["content_id"], body["fan_id"], body["active"]) == (item["id"], fan.id, True)
    assert body["created_at"] and body["disabled_at"] is None
    stored = api.session.get(ShareLink, body["code"])
    assert (stored.fan_id, stored.artist_id, stored.active) == (fan.id, artist.id, True)


def test_each_request_for_a_link_makes_a_new_one(api):
    fan, item = api.fan(), publish(api, api.artist())
    first, second = share(api, fan, item), share(api, fan, item)
    assert first["code"] != second["code"]
    assert first["active"] and second["active"]


def test_creating_a_link_needs_a_key(api):
    item = publish(api, api.artist())
    response = api.call("POST", "/v1/share-links", None, {"content_id": item["id"]})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize("role", ["artist", "storefront", "admin"])
def test_only_fans_create_share_links(api, role):
    item = publish(api, api.artist("Owner"))
    actor = {"artist": api.artist, "storefront": api.storefront, "admin": lambda: api.admin}[role]()
    before = row_counts(api.session)
    response = api.call("POST", "/v1/share-links", actor, {"content_id": item["id"]})
    assert response.status_code == 403
    assert row_counts(api.session) == before


def test_a_link_to_unknown_content_is_404_and_writes_nothing(api):
    fan = api.fan()
    before = row_counts(api.session)
    response = api.call("POST", "/v1/share-links", fan, {"content_id": "cnt_nope"})
    assert response.status_code == 404
    assert row_counts(api.session) == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "content_id"),
        ({"content_id": 123}, "content_id"),
        ({"content_id": None}, "content_id"),
        ({"content_id": ""}, "content_id"),
        ({"content_id": "x" * 65}, "content_id"),
        ("EXTRA", "fan_id"),
    ],
)
def test_an_invalid_link_request_is_422_and_writes_nothing(api, payload, field):
    fan, item = api.fan(), publish(api, api.artist())
    if payload == "EXTRA":
        payload = {"content_id": item["id"], "fan_id": "fan_someoneelse"}
    before = row_counts(api.session)
    response = api.call("POST", "/v1/share-links", fan, payload)
    assert response.status_code == 422
    assert field in response.get_json()["errors"]
    assert row_counts(api.session) == before


def test_codes_are_unique_and_of_the_documented_shape(api):
    fan, item = api.fan(), publish(api, api.artist())
    codes = [share(api, fan, item)["code"] for _ in range(200)]
    assert len(set(codes)) == 200
    assert all(CODE_SHAPE.match(code) for code in codes)


# clicking ------------------------------------------------------------------------


def test_a_click_redirects_with_ref_and_keeps_the_query_and_fragment(api):
    fan, item = api.fan(), publish(api, api.artist(), "https://shop.test/song?x=1#top")
    code = share(api, fan, item)["code"]
    response = click(api, code)
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://shop.test/song?x=1&ref={code}#top"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_ref_already_in_the_storefront_url_is_replaced(api):
    url = "https://shop.test/song?ref=old&q=a%20b&ref=older"
    fan, item = api.fan(), publish(api, api.artist(), url)
    code = share(api, fan, item)["code"]
    location = click(api, code).headers["Location"]
    assert location == f"https://shop.test/song?q=a%20b&ref={code}"


def test_a_click_records_a_hashed_address_and_a_truncated_user_agent(api, app):
    fan, item = api.fan(), publish(api, api.artist())
    code = share(api, fan, item)["code"]
    assert click(api, code, addr="203.0.113.7", agent="A" * 600 + "\x00").status_code == 302
    [row] = clicks_on(api, code)
    salt = app.config["CLICK_HASH_SALT"]
    assert row.ip_hash == hashlib.sha256(f"{salt}203.0.113.7".encode()).hexdigest()
    assert "203.0.113.7" not in (row.ip_hash, row.user_agent)
    assert row.user_agent == "A" * 512
    assert row.at is not None


def test_clicks_from_different_addresses_hash_differently(api):
    fan, item = api.fan(), publish(api, api.artist())
    code = share(api, fan, item)["code"]
    click(api, code, addr="203.0.113.7")
    click(api, code, addr="203.0.113.8")
    click(api, code, addr="203.0.113.7")
    hashes = [row.ip_hash for row in clicks_on(api, code)]
    assert len(hashes) == 3 and len(set(hashes)) == 2


def test_a_click_is_one_select_and_one_insert_without_any_key_lookup(api, statements):
    fan, item = api.fan(), publish(api, api.artist())
    code = share(api, fan, item)["code"]
    api.session.rollback()
    statements.clear()
    assert click(api, code).status_code == 302
    sql = [s for s in statements if not s.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    assert all("api_keys" not in s for s in sql)
    if api.session.get_bind().dialect.name == "postgresql":  # one round trip
        [both] = sql
        assert both.split()[0].upper() == "WITH"
        assert "share_links" in both and "content" in both and "INSERT INTO clicks" in both
        return
    assert [s.split()[0].upper() for s in sql] == ["SELECT", "INSERT"]
    assert "share_links" in sql[0] and "content" in sql[0]
    assert "clicks" in sql[1]


@pytest.mark.parametrize("code", ["zzzzzzzzzz", "ABCDEFGHJK", "short", "aaaaaaaaaaa", "iiiiiiiiii"])
def test_an_unknown_code_is_a_404_page_and_records_no_click(api, code):
    before = row_counts(api.session)
    response = click(api, code)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Link not found" in response.get_data(as_text=True)
    assert row_counts(api.session) == before


def test_a_malformed_code_never_reaches_the_database(api, statements):
    api.session.rollback()
    statements.clear()
    assert click(api, "not-a-code!").status_code == 404
    assert [s for s in statements if not s.upper().startswith(("BEGIN", "COMMIT"))] == []


def test_a_disabled_code_is_a_404_page_and_records_no_click(api):
    fan, item = api.fan(), publish(api, api.artist())
    code = share(api, fan, item)["code"]
    api.ok("POST", f"/v1/share-links/{code}/disable", fan)
    response = click(api, code)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert clicks_on(api, code) == []


@pytest.fixture
def batched(engine, db_url, session):
    """An app that batches clicks (as a server does by default), its rounds far apart:
    the test writes them with ``flush``."""
    from tests.conftest import create_test_app
    from tests.helpers import ApiDriver

    app = create_test_app(engine, db_url, CLICK_BATCH_SECONDS=3600)
    yield ApiDriver(app.test_client(), session), app.extensions["royalties.clicks"]
    app.extensions["royalties.clicks"].writer.close()


def test_a_batched_click_redirects_at_once_and_is_written_with_its_round(batched, statements):
    api, clicks = batched
    code = share(api, api.fan(), publish(api, api.artist(), "https://shop.test/s?x=1"))["code"]
    api.session.rollback()
    statements.clear()
    for _ in range(3):
        response = click(api, code)
        assert response.status_code == 302
        assert response.headers["Location"] == f"https://shop.test/s?x=1&ref={code}"
        assert response.headers["Cache-Control"] == "no-store"
    # The target, read once, without the write lock: no transaction per click.
    assert "BEGIN IMMEDIATE" not in statements
    [read] = [s for s in statements if not s.upper().startswith(("BEGIN", "COMMIT"))]
    assert read.upper().startswith("SELECT")
    assert clicks_on(api, code) == [] and clicks.writer.pending == 3
    assert clicks.writer.flush() == 3
    rows = clicks_on(api, code)
    salt = api.client.application.config["CLICK_HASH_SALT"]
    address = hashlib.sha256(f"{salt}203.0.113.7".encode()).hexdigest()
    assert [(r.ip_hash, r.user_agent) for r in rows] == [(address, "Mozilla/5.0 (test)")] * 3
    assert click(api, "not-a-code!").status_code == 404
    assert click(api, "zzzzzzzzzz").status_code == 404 and clicks.writer.pending == 0


def test_a_link_disabled_through_this_process_stops_redirecting_at_once(batched):
    api, clicks = batched
    fan = api.fan()
    code = share(api, fan, publish(api, api.artist()))["code"]
    assert click(api, code).status_code == 302
    api.ok("POST", f"/v1/share-links/{code}/disable", fan)
    response = click(api, code)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert clicks.writer.flush() == 1  # the click before the disabling
    assert api.ok("GET", f"/v1/share-links/{code}", fan)["clicks"] == 1


# reading and disabling -------------------------------------------------------------


def test_the_fan_the_artist_and_an_admin_see_the_click_count(api):
    artist, fan = api.artist(), api.fan()
    code = share(api, fan, publish(api, artist))["code"]
    click(api, code)
    click(api, code)
    for viewer in (fan, artist, api.admin):
        body = api.ok("GET", f"/v1/share-links/{code}", viewer)
        assert (body["code"], body["clicks"], body["active"]) == (code, 2, True)


def test_others_cannot_see_a_link(api):
    artist, fan = api.artist("Ada"), api.fan()
    code = share(api, fan, publish(api, artist))["code"]
    for outsider in (api.fan(), api.artist("Bo"), api.storefront()):
        assert api.call("GET", f"/v1/share-links/{code}", outsider).status_code == 403
    assert api.call("GET", f"/v1/share-links/{code}", None).status_code == 401


@pytest.mark.parametrize("who", ["fan", "artist", "admin"])
def test_the_fan_the_owning_artist_or_an_admin_disables_a_link(api, who):
    artist, fan = api.artist(), api.fan()
    code = share(api, fan, publish(api, artist))["code"]
    actor = {"fan": fan, "artist": artist, "admin": api.admin}[who]
    body = api.ok("POST", f"/v1/share-links/{code}/disable", actor)
    assert body["active"] is False and body["disabled_at"]
    stored = api.session.get(ShareLink, code)
    assert stored.active is False and stored.disabled_at is not None


@pytest.mark.parametrize("who", ["another fan", "another artist", "storefront"])
def test_others_cannot_disable_a_link(api, who):
    artist, fan = api.artist("Ada"), api.fan()
    code = share(api, fan, publish(api, artist))["code"]
    actor = {"another fan": api.fan, "another artist": lambda: api.artist("Bo")}.get(
        who, api.storefront
    )()
    assert api.call("POST", f"/v1/share-links/{code}/disable", actor).status_code == 403
    assert api.session.get(ShareLink, code).active is True
    assert click(api, code).status_code == 302


def test_disabling_twice_changes_nothing(api):
    fan = api.fan()
    code = share(api, fan, publish(api, api.artist()))["code"]
    first = api.ok("POST", f"/v1/share-links/{code}/disable", fan)
    second = api.ok("POST", f"/v1/share-links/{code}/disable", fan)
    assert first == second and second["active"] is False


@pytest.mark.parametrize("code", ["zzzzzzzzzz", "bad code", "x" * 40])
def test_an_unknown_link_is_404_to_read_or_disable(api, code):
    assert api.call("GET", f"/v1/share-links/{code}", api.admin).status_code == 404
    assert api.call("POST", f"/v1/share-links/{code}/disable", api.admin).status_code == 404


def test_disabling_needs_a_key(api):
    fan = api.fan()
    code = share(api, fan, publish(api, api.artist()))["code"]
    assert api.call("POST", f"/v1/share-links/{code}/disable", None).status_code == 401


# signing up through a link -----------------------------------------------------------


def test_signing_up_with_a_share_code_makes_the_links_fan_the_sponsor(api):
    sharer = api.fan()
    code = share(api, sharer, publish(api, api.artist()))["code"]
    body = api.ok("POST", "/v1/fans", None, {"handle": "newbie", "ref": code}, 201)
    assert body["sponsor_id"] == sharer.id


def test_signing_up_with_a_disabled_share_code_is_422_and_writes_nothing(api):
    sharer = api.fan()
    code = share(api, sharer, publish(api, api.artist()))["code"]
    api.ok("POST", f"/v1/share-links/{code}/disable", sharer)
    before = row_counts(api.session)
    response = api.call("POST", "/v1/fans", None, {"handle": "newbie", "ref": code})
    assert response.status_code == 422
    assert "ref" in response.get_json()["errors"]
    assert row_counts(api.session) == before


# the contract ----------------------------------------------------------------------


def test_the_click_path_is_in_the_openapi_document(client):
    spec = client.get("/openapi.json").get_json()
    click_op = spec["paths"]["/l/{code}"]["get"]
    assert {"302", "404"} <= set(click_op["responses"])
    assert "security" not in click_op
    assert "text/html" in click_op["responses"]["404"].get("content", {})
    assert spec["paths"]["/v1/share-links"]["post"]["security"] == [{"bearerAuth": []}]
