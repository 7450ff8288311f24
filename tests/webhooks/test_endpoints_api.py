"""Webhook endpoints through the API: a secret shown only on creation and rotation that
Standard Webhooks libraries accept; each owner sees only its own endpoints (another's is
404, admin sees all); bad input writes nothing; deliveries list every attempt; replay
re-queues only what the endpoint may see and wants; a disabled endpoint is a notice on
the dashboard with a button that enables it again."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from standardwebhooks import Webhook

from royalties.db import utcnow
from royalties.ids import new_id
from royalties.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from royalties.webhooks import Settings, deliver_due, fan_out
from tests.helpers import Actor, ApiDriver, buy, row_counts
from tests.web.conftest import Browser

BASE = "/v1/webhook-endpoints"
SHOWN = {
    "id",
    "url",
    "events",
    "owner_role",
    "owner_id",
    "created_at",
    "previous_secret_until",
    "failing_since",
    "disabled_at",
    "disabled_reason",
}
# Deliver at once and retry at once, so one deliver_due() runs a whole retry schedule.
AT_ONCE = Settings(schedule=(0, 0), timeout=2.0)


def create(api: ApiDriver, owner: Actor, **body: Any) -> dict[str, Any]:
    body.setdefault("url", "https://hooks.example/in")
    return api.ok("POST", BASE, owner, body, 201)  # type: ignore[no-any-return]


def stored(api: ApiDriver, endpoint_id: str) -> WebhookEndpoint | None:
    api.session.expire_all()
    row = api.session.get(WebhookEndpoint, endpoint_id)
    api.session.expunge_all()  # readable after the rollback, without a new transaction
    api.session.rollback()
    return row


def deliveries_of(api: ApiDriver, endpoint_id: str) -> list[WebhookDelivery]:
    api.session.expire_all()
    rows = list(
        api.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.event_seq)
        )
    )
    api.session.expunge_all()
    api.session.rollback()
    return rows


def disable(api: ApiDriver, endpoint_id: str, reason: str = "every delivery failed") -> None:
    api.session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(disabled_at=utcnow(), disabled_reason=reason, failing_since=utcnow())
    )
    api.session.commit()


# -- creating, and the secret -------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "artist", "storefront"])
def test_a_new_endpoint_shows_its_secret_once_and_standard_webhooks_accepts_it(api, role):
    owner = {"admin": api.admin, "artist": api.artist(), "storefront": api.storefront()}[role]
    made = create(api, owner, events=["reward.created", "purchase.recorded"])

    assert set(made) == SHOWN | {"secret"}
    assert made["secret"].startswith("whsec_")
    signed = Webhook(made["secret"]).sign("msg_1", utcnow(), '{"a":1}')
    assert signed.startswith("v1,")
    assert made["events"] == ["purchase.recorded", "reward.created"]  # known order, once each
    assert (made["owner_role"], made["owner_id"]) == (role, owner.id)
    assert made["disabled_at"] is None and made["disabled_reason"] is None
    row = stored(api, made["id"])
    assert row is not None and row.secret == made["secret"]

    listed = api.call("GET", BASE, owner)
    again = api.ok("GET", f"{BASE}/{made['id']}", owner)
    for text in (listed.get_data(as_text=True), json.dumps(again)):
        assert made["secret"] not in text and '"secret"' not in text
    assert [e["id"] for e in listed.get_json()["items"]] == [made["id"]]
    assert set(again) == SHOWN


def test_an_endpoint_without_events_gets_every_type(api):
    made = create(api, api.storefront(), events=None)
    assert made["events"] is None
    assert create(api, api.storefront())["events"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example/in"}, "url"),
        ({"url": "hooks.example/in"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://user:pass@hooks.example/in"}, "url"),
        ({"url": "https://hooks.example/in#part"}, "url"),
        ({"url": "https://hooks.example/" + "a" * 2100}, "url"),
        ({"url": "https://hooks.example:port/in"}, "url"),
        ({"url": "https://hooks.example/a b"}, "url"),
        ({}, "url"),
        ({"url": "https://hooks.example/in", "events": ["purchase.recorded", "nope"]}, "events"),
        ({"url": "https://hooks.example/in", "events": []}, "events"),
        ({"url": "https://hooks.example/in", "events": "purchase.recorded"}, "events"),
        ({"url": "https://hooks.example/in", "secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_input_is_422_naming_the_field_and_writes_nothing(api, body, field):
    artist = api.artist()
    before = row_counts(api.session)
    response = api.call("POST", BASE, artist, body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert field in problem["errors"], problem
    assert row_counts(api.session) == before


def test_a_fan_key_may_not_touch_webhook_endpoints(api):
    fan = api.fan()
    made = create(api, api.admin)
    before = row_counts(api.session)
    for method, path, body in [
        ("GET", BASE, None),
        ("POST", BASE, {"url": "https://hooks.example/in"}),
        ("GET", f"{BASE}/{made['id']}", None),
        ("POST", f"{BASE}/{made['id']}/rotate-secret", None),
        ("DELETE", f"{BASE}/{made['id']}", None),
    ]:
        response = api.call(method, path, fan, body)
        assert response.status_code == 403, (method, path, response.get_json())
    assert api.call("GET", BASE).status_code == 401
    assert row_counts(api.session) == before


# -- who sees what ------------------------------------------------------------------------


def test_an_owner_sees_only_its_own_endpoints_and_another_s_is_404(api):
    ada, bea, shop = api.artist("Ada"), api.artist("Bea"), api.storefront()
    adas = create(api, ada)
    beas = create(api, bea)
    shops = create(api, shop)
    since = {"since": (utcnow() - timedelta(days=1)).isoformat()}

    assert [e["id"] for e in api.ok("GET", BASE, ada)["items"]] == [adas["id"]]
    assert [e["id"] for e in api.ok("GET", BASE, shop)["items"]] == [shops["id"]]
    before = row_counts(api.session)
    for method, tail, body in [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "/rotate-secret", None),
        ("POST", "/enable", None),
        ("GET", "/deliveries", None),
        ("POST", "/replay", since),
    ]:
        for other in (bea, shop):
            response = api.call(method, f"{BASE}/{adas['id']}{tail}", other, body)
            assert response.status_code == 404, (method, tail, response.get_json())
            assert response.get_json()["code"] == "not_found"
    assert row_counts(api.session) == before
    row = stored(api, adas["id"])
    assert row is not None and row.secret == adas["secret"]

    everyone = api.ok("GET", BASE, api.admin)["items"]
    assert {e["id"] for e in everyone} == {adas["id"], beas["id"], shops["id"]}
    assert api.ok("GET", f"{BASE}/{adas['id']}", api.admin)["owner_id"] == ada.id
    api.ok("POST", f"{BASE}/{adas['id']}/rotate-secret", api.admin)
    assert api.call("DELETE", f"{BASE}/{beas['id']}", api.admin).status_code == 204
    assert stored(api, beas["id"]) is None


def test_an_unknown_or_malformed_id_is_404(api):
    artist = api.artist()
    for endpoint_id in ("we_00000000000000000000", "nope", "x" * 40):
        assert api.call("GET", f"{BASE}/{endpoint_id}", artist).status_code == 404


def test_the_list_pages_with_a_cursor(api):
    shop = api.storefront()
    made = [create(api, shop, url=f"https://hooks.example/{i}")["id"] for i in range(3)]
    first = api.ok("GET", f"{BASE}?limit=2", shop)
    second = api.ok("GET", f"{BASE}?limit=2&cursor={first['next_cursor']}", shop)
    assert [e["id"] for e in first["items"] + second["items"]] == made[::-1]
    assert second["next_cursor"] is None


# -- rotation, deletion -------------------------------------------------------------------


def test_rotating_gives_a_new_secret_and_the_previous_one_signs_for_24_hours(api):
    shop = api.storefront()
    made = create(api, shop)
    before = utcnow()
    rotated = api.ok("POST", f"{BASE}/{made['id']}/rotate-secret", shop)

    assert set(rotated) == SHOWN | {"secret"}
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != made["secret"]
    Webhook(rotated["secret"])
    row = stored(api, made["id"])
    assert row is not None and row.previous_secret_until is not None
    assert (row.secret, row.previous_secret) == (rotated["secret"], made["secret"])
    overlap = row.previous_secret_until - before
    assert timedelta(hours=24) <= overlap <= timedelta(hours=24, minutes=1)
    assert rotated["previous_secret_until"] is not None
    assert '"secret"' not in json.dumps(api.ok("GET", f"{BASE}/{made['id']}", shop))


def _event(api: ApiDriver, **whose: Any) -> int:
    event = Event(
        id=new_id("evt"),
        type=whose.pop("type", "purchase.recorded"),
        body="{}",
        fanned_out=True,
        **whose,
    )
    api.session.add(event)
    api.session.flush()
    return event.seq


def test_deleting_an_endpoint_removes_its_deliveries_and_their_attempts(api):
    shop = api.storefront()
    doomed, kept = create(api, shop), create(api, shop)
    seq = _event(api, storefront_id=shop.id)
    for endpoint in (doomed, kept):
        delivery = WebhookDelivery(endpoint_id=endpoint["id"], event_seq=seq, attempts=1)
        api.session.add(delivery)
        api.session.flush()
        api.session.add(WebhookAttempt(delivery_id=delivery.id, status_code=500, duration_ms=3))
    api.session.commit()

    response = api.call("DELETE", f"{BASE}/{doomed['id']}", shop)
    assert response.status_code == 204 and response.get_data() == b""
    assert stored(api, doomed["id"]) is None
    assert deliveries_of(api, doomed["id"]) == []
    assert len(deliveries_of(api, kept["id"])) == 1
    assert api.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 1
    api.session.rollback()
    assert api.call("DELETE", f"{BASE}/{doomed['id']}", shop).status_code == 404


# -- deliveries and replay ----------------------------------------------------------------


def test_the_deliveries_list_shows_every_attempt_to_a_real_receiver(api, engine, receiver):
    artist, shop = api.artist(), api.storefront()
    song = api.content(artist)
    made = create(api, shop, url=receiver.url, events=["purchase.recorded"])
    receiver.fail_next(1, status=503)  # the first post fails, its retry succeeds
    purchase = buy(api, shop, song, {"email": "buyer@example.com"})
    fan_out(engine, {}, utcnow())
    assert deliver_due(engine, {}, settings=AT_ONCE) == 1

    got = receiver.ok_requests()
    assert len(got) == 2
    for request in got:
        verified = Webhook(made["secret"]).verify(request.body, request.headers)
        assert verified["type"] == "purchase.recorded"
        assert verified["data"]["id"] == purchase["id"]
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]

    page = api.ok("GET", f"{BASE}/{made['id']}/deliveries", shop)
    assert page["next_cursor"] is None
    [delivery] = page["items"]
    assert delivery["event_id"] == got[0].headers["webhook-id"]
    assert delivery["event_type"] == "purchase.recorded"
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "delivered",
        2,
        204,
    )
    assert delivery["delivered_at"] is not None and delivery["next_attempt_at"] is None
    first, second = delivery["attempt_log"]
    assert set(first) == {"at", "status_code", "duration_ms", "error"}
    assert first["status_code"] == 503 and first["error"]
    assert second["status_code"] == 204 and second["error"] is None
    assert first["at"] <= second["at"] and second["duration_ms"] >= 0
    assert api.ok("GET", f"{BASE}/{made['id']}", shop)["failing_since"] is None


def test_replay_requeues_and_creates_only_what_the_endpoint_may_see_and_wants(api, engine):
    ada, bea, shop = api.artist("Ada"), api.artist("Bea"), api.storefront()
    adas_song, beas_song = api.content(ada), api.content(bea)
    start = utcnow() - timedelta(seconds=1)
    made = create(api, ada, events=["purchase.recorded"])
    buy(api, shop, adas_song, {"email": "one@example.com"})
    buy(api, shop, beas_song, {"email": "two@example.com"})
    fan_out(engine, {}, utcnow())
    [sent] = deliveries_of(api, made["id"])
    api.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == sent.id)
        .values(state="failed", attempts=8, last_status=500)
    )
    api.session.commit()
    disable(api, made["id"])  # events written while disabled get no delivery
    buy(api, shop, adas_song, {"email": "three@example.com"})
    buy(api, shop, beas_song, {"email": "four@example.com"})
    fan_out(engine, {}, utcnow())
    assert len(deliveries_of(api, made["id"])) == 1

    replayed = api.ok("POST", f"{BASE}/{made['id']}/replay", ada, {"since": start.isoformat()}, 202)

    assert replayed == {"queued": 2}
    rows = deliveries_of(api, made["id"])
    assert len(rows) == 2 and rows[0].id == sent.id
    assert {(r.state, r.attempts) for r in rows} == {("pending", 0)}
    assert all(r.next_attempt_at <= utcnow() for r in rows)
    events = [
        api.session.scalars(select(Event).where(Event.seq == r.event_seq)).one() for r in rows
    ]
    assert {(e.type, e.artist_id) for e in events} == {("purchase.recorded", ada.id)}
    api.session.rollback()
    # Only what is written since: a later time queues nothing older.
    later = {"since": utcnow().isoformat()}
    assert api.ok("POST", f"{BASE}/{made['id']}/replay", ada, later, 202) == {"queued": 0}


def test_replay_since_the_future_is_422_and_a_time_without_offset_is_utc(api):
    shop = api.storefront()
    made = create(api, shop)
    path = f"{BASE}/{made['id']}/replay"
    before = row_counts(api.session)
    for since in ((utcnow() + timedelta(minutes=5)).isoformat(), "yesterday", None):
        response = api.call("POST", path, shop, {"since": since})
        assert response.status_code == 422 and "since" in response.get_json()["errors"]
    assert api.call("POST", path, shop, {}).status_code == 422
    assert row_counts(api.session) == before
    naive = (utcnow() - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert api.ok("POST", path, shop, {"since": naive}, 202) == {"queued": 0}


# -- disabled endpoints: the API and the dashboard ---------------------------------------


def test_enabling_a_disabled_endpoint_clears_the_notice_in_the_api(api):
    shop = api.storefront()
    made = create(api, shop)
    disable(api, made["id"], "every delivery failed since yesterday")
    shown = api.ok("GET", f"{BASE}/{made['id']}", shop)
    assert shown["disabled_at"] is not None
    assert shown["disabled_reason"] == "every delivery failed since yesterday"

    enabled = api.ok("POST", f"{BASE}/{made['id']}/enable", shop)
    assert (enabled["disabled_at"], enabled["disabled_reason"], enabled["failing_since"]) == (
        None,
        None,
        None,
    )
    assert api.ok("POST", f"{BASE}/{made['id']}/enable", shop) == enabled  # a no-op now


def test_the_artist_page_shows_a_disabled_endpoint_and_enables_it_again(api, app):
    artist, other = api.artist("Ada"), api.artist("Bea")
    made = create(api, artist, url="https://hooks.example/ada")
    healthy = create(api, artist, url="https://hooks.example/fine")
    disable(api, made["id"], "every delivery failed since 2026-01-01 00:00 UTC")
    page = f"/dashboard/artists/{artist.id}"
    enable = f"/dashboard/webhook-endpoints/{made['id']}/enable"

    browser = Browser(app)
    browser.sign_in(artist.key)
    html = browser.get(page).get_data(as_text=True)
    assert 'id="webhook-notices"' in html and "https://hooks.example/ada" in html
    assert "every delivery failed since 2026-01-01 00:00 UTC" in html
    assert f'action="{enable}"' in html and "Enable again" in html
    assert healthy["url"] not in html

    assert browser.post(enable, {"back": page}, csrf=False).status_code == 400
    intruder = Browser(app)
    intruder.sign_in(other.key)
    intruder.get(f"/dashboard/artists/{other.id}")
    assert intruder.post(enable, {"back": page}).status_code == 404
    row = stored(api, made["id"])
    assert row is not None and row.disabled_at is not None

    response = browser.post(enable, {"back": page})
    assert response.status_code == 303
    assert response.headers["Location"] == f"{page}#webhook-notices"
    row = stored(api, made["id"])
    assert row is not None and row.disabled_at is None and row.disabled_reason is None
    html = browser.get(page).get_data(as_text=True)
    assert 'id="webhook-notices"' not in html
    assert "Enabled https://hooks.example/ada again" in html


def test_the_operator_page_shows_every_disabled_endpoint_with_its_owner(api, app):
    shop = api.storefront()
    made = create(api, shop, url="https://shop-hooks.example/in")
    disable(api, made["id"], "every delivery failed since last week")
    operator = Browser(app)
    operator.sign_in(api.admin.key)
    html = operator.get("/dashboard/").get_data(as_text=True)
    assert "https://shop-hooks.example/in" in html and shop.id in html
    assert "every delivery failed since last week" in html

    response = operator.post(
        f"/dashboard/webhook-endpoints/{made['id']}/enable", {"back": "https://evil.example/"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/dashboard/#webhook-notices"  # no open redirect
    row = stored(api, made["id"])
    assert row is not None and row.disabled_at is None
