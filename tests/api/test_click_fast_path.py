"""The click redirect's fast path (``api.clicks``) answers as the Flask route does.

Two apps on one database: one writes each click in its own transaction (the Flask
route, as the tests' apps do), one batches them (a server's default), so a well-formed
code's click is answered before Flask. The same requests get the same status, headers
and body from both; the fast path spends the same click budget, counts the same
metrics, logs the same line, and leaves everything else to Flask."""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import func, select

from api import logs
from royalties.models import Click
from royalties.services.links import hash_client_address
from tests.conftest import create_test_app
from tests.helpers import ApiDriver

ADDRESS = {"REMOTE_ADDR": "198.51.100.4"}


@pytest.fixture
def pair(engine, db_url, session):
    """(route app's client, fast path app's client, a live link's code); both apps
    allow three clicks a minute per address."""
    apps = [
        create_test_app(engine, db_url, CLICK_BATCH_SECONDS=batch, RATELIMIT_CLICKS="3/minute")
        for batch in (0, 3600)
    ]
    api = ApiDriver(apps[0].test_client(), session)
    item = {"title": "S", "kind": "track", "price": 500, "currency": "USD"}
    item["storefront_url"] = "https://shop.test/s?a=1&b=%C3%A9#top"
    content = api.ok("POST", "/v1/content", api.artist(), item, 201)
    code = api.ok("POST", "/v1/share-links", api.fan(), {"content_id": content["id"]}, 201)
    yield apps[0].test_client(), apps[1].test_client(), code["code"]
    apps[1].extensions["royalties.clicks"].writer.close()


def answer(client, path, request_id="req-1", **environ):
    response = client.get(
        path, headers={"X-Request-Id": request_id}, environ_base={**ADDRESS, **environ}
    )
    headers = {name.lower(): value for name, value in response.headers.items()}
    return response.status_code, headers, response.get_data()


def test_a_click_an_unknown_link_and_a_refused_click_answer_alike(pair):
    route, fast, code = pair
    for path in (f"/l/{code}", "/l/zzzzzzzzzz"):
        assert answer(fast, path) == answer(route, path), path
    status, headers, _ = answer(fast, f"/l/{code}")
    assert status == 302 and headers["location"].endswith(f"ref={code}#top")
    assert headers["cache-control"] == "no-store" and headers["x-request-id"] == "req-1"
    # Three clicks a minute per address, each app its own counter: both are spent now.
    assert answer(route, f"/l/{code}")[0] == 302
    refused = {app: answer(client, f"/l/{code}") for app, client in (("r", route), ("f", fast))}
    assert refused["f"] == refused["r"] and refused["f"][0] == 429
    assert "retry-after" in refused["f"][1] and b"Too many links" in refused["f"][2]
    other = {**ADDRESS, "REMOTE_ADDR": "198.51.100.5"}
    assert answer(fast, f"/l/{code}", **other)[0] == 302  # another address, its own budget


def test_a_fast_click_is_queued_counted_and_logged_with_its_request_id(pair, engine, caplog):
    _route, fast, code = pair
    app = fast.application
    written = io.StringIO()
    handler = logs.install(logging.StreamHandler(written))  # the server's format
    logger = logging.getLogger("royalties.request")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="royalties.request"):
            status, headers, _ = answer(fast, f"/l/{code}", request_id="bad id!")
    finally:
        logger.removeHandler(handler)
    assert status == 302 and len(headers["x-request-id"]) == 32  # a malformed id replaced
    [line] = [r for r in caplog.records if r.name == "royalties.request"]
    assert line.getMessage().startswith(f"GET /l/{code} 302 ")
    assert line.http["status"] == 302 and line.http["path"] == f"/l/{code}"
    assert f"[{headers['x-request-id']}] GET /l/{code} 302 " in written.getvalue()
    clicks = app.extensions["royalties.clicks"]
    assert clicks.writer.flush() == 1
    with engine.connect() as conn:
        row = conn.execute(select(Click.ip_hash, Click.user_agent)).one()
    salt = app.config["CLICK_HASH_SALT"]
    assert row.ip_hash == hash_client_address(salt, ADDRESS["REMOTE_ADDR"])
    assert row.user_agent.startswith("Werkzeug")
    metrics = fast.get("/metrics", headers={"Authorization": f"Bearer {admin_key(app)}"})
    assert 'route="/l/<code>",status="302"' in metrics.get_data(as_text=True)


def admin_key(app):
    from royalties.db import make_sessionmaker
    from royalties.services.accounts import create_admin_key

    session = make_sessionmaker(app.extensions["royalties.db"][0])()
    try:
        return create_admin_key(session)
    finally:
        session.close()


def test_other_shapes_methods_and_queries_are_left_to_the_route(pair, engine):
    route, fast, code = pair
    statuses = []
    for path in (f"/l/{code}?x=%00", "/l/not-a-code", f"/l/{code}/more"):
        got = answer(fast, path)
        assert got[:2] == answer(route, path)[:2], path
        statuses.append(got[0])
    assert statuses == [422, 404, 404]  # the route's query check; no such link; no route
    head = fast.head(f"/l/{code}", environ_base=ADDRESS)
    assert head.status_code == 302
    with engine.connect() as conn:  # the route wrote its own clicks; none is queued
        written = conn.scalar(select(func.count()).select_from(Click))
    assert fast.application.extensions["royalties.clicks"].writer.pending == 1  # the HEAD
    assert written == 0


def test_behind_a_trusted_proxy_the_click_is_hashed_from_the_forwarded_address(
    engine, db_url, session
):
    app = create_test_app(engine, db_url, CLICK_BATCH_SECONDS=3600, TRUSTED_PROXIES=1)
    api = ApiDriver(app.test_client(), session)
    item = {"title": "S", "kind": "track", "price": 500, "currency": "USD"}
    content = api.ok(
        "POST", "/v1/content", api.artist(), {**item, "storefront_url": "https://s.io"}, 201
    )
    code = api.ok("POST", "/v1/share-links", api.fan(), {"content_id": content["id"]}, 201)["code"]
    response = app.test_client().get(
        f"/l/{code}", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=ADDRESS
    )
    assert response.status_code == 302
    clicks = app.extensions["royalties.clicks"]
    assert clicks.writer.flush() == 1
    with engine.connect() as conn:
        hashed = conn.scalar(select(Click.ip_hash))
    assert hashed == hash_client_address(app.config["CLICK_HASH_SALT"], "203.0.113.9")
    clicks.writer.close()
