"""The real worker (``royalties worker``, a process of its own) delivers every event to a
receiver of the suite's own on 127.0.0.1: signed, at least once, with the same id on
every attempt, nothing lost when the receiver or the worker goes down."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from api.dev.fake_stripe import make_event
from royalties import events
from royalties.db import utcnow
from royalties.models import Event, Reward, WebhookAttempt, WebhookDelivery
from royalties.models.events import EVENT_TYPES
from royalties.webhooks.endpoints import Owner
from tests.helpers import buy, new_key, refund, share
from tests.payouts.conftest import fake_stripe, papi, shop, stripe_config
from tests.webhooks.conftest import Receiver, endpoint_for, wait_for, worker_process

__all__ = ["fake_stripe", "papi", "shop", "stripe_config"]

ADMIN = Owner("admin", None)


def stored_events(session: Session) -> dict[str, str]:
    """Every event's id and body as written."""
    rows = session.execute(select(Event.id, Event.body).order_by(Event.seq)).all()
    session.rollback()
    return dict(rows)


def backlog(session: Session, n: int, *, artist_id: str | None = None) -> list[str]:
    """``n`` events written straight into the outbox (as the services write them)."""
    pending = [
        events.Pending("purchase.recorded", {"n": i}, events.Whose(artist_id=artist_id))
        for i in range(n)
    ]
    events.record_all(session, pending)
    session.commit()
    ids = list(session.scalars(select(Event.id).order_by(Event.seq.desc()).limit(n)))
    session.rollback()
    return ids


def held_sale(shop: Any, fan: Any, buyer_email: str) -> None:
    code = share(shop.api, fan, shop.item["id"])
    buy(shop.api, shop.storefront, shop.item, {"email": buyer_email}, share_code=code)


def test_every_event_type_arrives_signed_and_as_written(shop, session, db_url, receiver):
    _, secret = endpoint_for(session, ADMIN, receiver.url)
    ann, bea = shop.api.fan(email="ann@example.com"), shop.api.fan(email="bea@example.com")
    sold = shop.earn(ann, 3000)  # fan.enrolled, purchase.recorded, reward.created
    refund(shop.api, shop.storefront, sold["id"], 1000)  # refund.recorded, reward.reversed
    shop.earn(ann, 3000)
    shop.earn(bea, 4000)
    held_sale(shop, ann, "ann+alt@example.com")  # reward.held
    [held] = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"]
    decision = {"decision": "approve", "reason": "checked"}  # reward.released
    shop.api.ok("POST", f"/v1/review/{held['reward_id']}", shop.api.admin, decision)
    held_sale(shop, bea, "bea+alt@example.com")
    [held] = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"]
    decision = {"decision": "reject", "reason": "a sock puppet"}  # reward.rejected
    shop.api.ok("POST", f"/v1/review/{held['reward_id']}", shop.api.admin, decision)
    # reward.available: the worker's maturing job finds these rewards' hold passed.
    session.execute(update(Reward).values(available_at=utcnow() - timedelta(minutes=1)))
    session.commit()
    with worker_process(db_url) as worker:
        wait_for(lambda: "reward.available" in _types(receiver), what="maturing")
        shop.connect(ann)
        shop.connect(bea)
        shop.fake.fail_next("POST transfers", 400, message="No such destination")
        run = shop.run()  # payout.paid for one fan, payout.failed for the other
        paid = next(p for p in run["payouts"] if p["state"] == "paid")
        shop.fake.reverse_transfer(paid["stripe_transfer_id"], 500)
        transfer = next(t for t in shop.fake.transfers if t["id"] == paid["stripe_transfer_id"])
        assert shop.webhook(make_event("transfer.reversed", transfer)).status_code == 200

        written = stored_events(session)
        wait_for(
            lambda: set(receiver.ids()) >= set(written) and _fanned_out(session),
            what="every event delivered",
        )
        assert worker.stop() == 0
    assert "worker: stopped" in worker.output()
    written = stored_events(session)
    got = {r.headers["webhook-id"]: r for r in receiver.ok_requests()}
    assert set(got) == set(written)
    assert _types(receiver) == set(EVENT_TYPES)
    for event_id, body in written.items():
        request = got[event_id]
        assert request.body.decode() == body  # the bytes written in the change's transaction
        assert Webhook(secret).verify(request.body, request.headers)["id"] == event_id
    # The payloads are the API's objects (as they were then: the last purchase was not
    # refunded since), the payout as listed.
    recorded = [json.loads(b) for b in written.values() if '"purchase.recorded"' in b][-1]
    assert recorded["data"] == shop.api.ok(
        "GET", f"/v1/purchases/{recorded['data']['id']}", shop.storefront
    )
    reversed_ = next(json.loads(b) for b in written.values() if '"payout.reversed"' in b)
    listed = shop.api.ok(
        "GET", "/v1/payouts", shop.api.admin, query_string={"fan_id": paid["fan_id"]}
    )["items"][0]
    assert reversed_["data"] == listed


def _types(receiver: Receiver) -> set[str]:
    return {r.json()["type"] for r in receiver.ok_requests()}


def _fanned_out(session: Session) -> bool:
    left = session.scalar(select(func.count()).where(~Event.fanned_out))
    session.rollback()
    return left == 0


def test_a_receiver_failing_twice_gets_the_same_id_three_times(session, db_url, receiver):
    endpoint_id, secret = endpoint_for(session, ADMIN, receiver.url)
    receiver.fail_next(2, status=503)
    [event_id] = backlog(session, 1)
    with worker_process(db_url):
        wait_for(lambda: len(receiver.ok_requests()) >= 3, what="three attempts")
        wait_for(lambda: _delivery(session, endpoint_id)[0] == "delivered", what="delivered")
    assert receiver.ids() == [event_id] * 3
    bodies = {r.body for r in receiver.ok_requests()}
    assert len(bodies) == 1
    for request in receiver.ok_requests():
        Webhook(secret).verify(request.body, request.headers)
    state, attempts, statuses = _delivery(session, endpoint_id)
    assert (state, attempts, statuses) == ("delivered", 3, [503, 503, 204])


def _delivery(session: Session, endpoint_id: str) -> tuple[str, int, list[int | None]]:
    delivery = session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    )
    assert delivery is not None
    statuses = list(
        session.scalars(
            select(WebhookAttempt.status_code)
            .where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.id)
        )
    )
    found = (delivery.state, delivery.attempts, statuses)
    session.rollback()
    return found


def test_a_receiver_down_during_a_backlog_of_1000_gets_every_one_when_back(
    session, db_url, receiver
):
    endpoint_for(session, ADMIN, receiver.url)
    receiver.stop()
    ids = backlog(session, 1000)
    with worker_process(db_url):
        wait_for(lambda: _failed_attempts(session) >= 2, what="attempts against a dead receiver")
        receiver.start()
        wait_for(lambda: set(receiver.ids()) >= set(ids), timeout=90, what="the backlog")
    assert set(receiver.ids()) == set(ids)
    # Waiting for the receiver spent no attempts: each event came in once or twice.
    assert len(receiver.ids()) <= len(ids) + 50


def _failed_attempts(session: Session) -> int:
    n = session.scalar(select(func.count()).where(WebhookAttempt.status_code.is_(None)))
    session.rollback()
    return n or 0


def test_a_worker_killed_mid_delivery_loses_nothing(session, db_url, receiver):
    endpoint_for(session, ADMIN, receiver.url)
    receiver.delay = 0.02
    ids = backlog(session, 400)
    with worker_process(db_url) as first:
        wait_for(lambda: len(receiver.ok_requests()) >= 60, what="deliveries under way")
        first.kill()  # SIGKILL: no chance to record its batch
    assert len(set(receiver.ids())) < len(ids)
    with worker_process(db_url):  # takes the dead one's leases once they run out
        wait_for(lambda: set(receiver.ids()) >= set(ids), timeout=90, what="every event")
    got = receiver.ids()
    assert set(got) == set(ids)
    assert len(got) - len(ids) <= 50  # at most the killed batch went twice


@pytest.mark.postgres
def test_two_workers_on_postgresql_deliver_each_event_once(session, db_url, receiver):
    endpoint_for(session, ADMIN, receiver.url)
    receiver.delay = 0.002
    with worker_process(db_url) as one, worker_process(db_url) as two:
        ids = backlog(session, 2000)
        wait_for(lambda: set(receiver.ids()) >= set(ids), timeout=120, what="every event")
        logs = (one.output(), two.output())
    got = receiver.ids()
    assert sorted(got) == sorted(ids)  # once each
    assert all("delivered" in log for log in logs), "both workers delivered"


def test_an_artists_endpoint_never_sees_another_artists_events(api, session, db_url, receiver):
    ada, bo = api.artist("Ada"), api.artist("Bo")
    shop = api.storefront()
    ada_song, bo_song = api.content(ada), api.content(bo)
    # One receiver, told apart by path.
    endpoint_for(session, Owner("artist", ada.id), receiver.url + "/ada")
    endpoint_for(session, Owner("artist", bo.id), receiver.url + "/bo")
    endpoint_for(session, Owner("storefront", shop.id), receiver.url + "/shop")
    with worker_process(db_url):
        fan = api.fan("fan")
        for song in (ada_song, bo_song):
            code = share(api, fan, song["id"])
            buy(api, shop, song, {"email": f"b-{song['id']}@x.io"}, share_code=code)
        written = session.execute(select(Event.id, Event.artist_id, Event.storefront_id)).all()
        session.rollback()
        wanted = {
            "/hooks/ada": {i for i, artist, _ in written if artist == ada.id},
            "/hooks/bo": {i for i, artist, _ in written if artist == bo.id},
            "/hooks/shop": {i for i, _, store in written if store == shop.id},
        }
        total = sum(len(v) for v in wanted.values())
        wait_for(lambda: len(receiver.ok_requests()) >= total, what="the deliveries")
    got: dict[str, set[str]] = {path: set() for path in wanted}
    for request in receiver.ok_requests():
        got[request.path].add(request.headers["webhook-id"])
    assert got == wanted
    assert wanted["/hooks/ada"] and wanted["/hooks/bo"]
    assert not wanted["/hooks/ada"] & wanted["/hooks/bo"]
    assert len(receiver.ok_requests()) == total


def test_a_purchase_that_fails_validation_sends_nothing(api, session, db_url, receiver):
    artist, shop = api.artist(), api.storefront()
    song = api.content(artist)
    endpoint_for(session, ADMIN, receiver.url)
    with worker_process(db_url):
        bad = {
            "content_id": song["id"],
            "amount": 1999,
            "currency": "EUR",  # the song is sold in USD
            "buyer": {"email": "x@buyer.test"},
        }
        answer = api.call(
            "POST", "/v1/purchases", shop, bad, headers={"Idempotency-Key": new_key()}
        )
        assert answer.status_code == 422
        good = buy(api, shop, song, {"email": "y@buyer.test"})
        wait_for(
            lambda: any(r.json()["data"].get("id") == good["id"] for r in receiver.ok_requests()),
            what="the good purchase",
        )
        wait_for(lambda: _fanned_out(session), what="the fan-out")
    sent = [r.json() for r in receiver.ok_requests()]
    assert {e["type"] for e in sent} == {"fan.enrolled", "purchase.recorded"}
    assert [e["data"]["id"] for e in sent if e["type"] == "purchase.recorded"] == [good["id"]]


def test_sigterm_finishes_the_batch_in_flight_and_exits_0(session, db_url, receiver):
    endpoint_id, _ = endpoint_for(session, ADMIN, receiver.url)
    receiver.delay = 0.3
    backlog(session, 5)
    with worker_process(db_url) as worker:
        wait_for(lambda: receiver.ok_requests(), what="the first delivery")
        assert worker.stop() == 0
    output = worker.output()
    assert "SIGTERM" in output and "worker: stopped" in output
    # What it had sent is recorded as delivered: nothing is left leased to a dead worker.
    rows = session.execute(
        select(WebhookDelivery.state, WebhookDelivery.claimed_until).where(
            WebhookDelivery.endpoint_id == endpoint_id
        )
    ).all()
    delivered = sum(state == "delivered" for state, _ in rows)
    assert delivered == len(receiver.ok_requests())
    assert all(lease is None for _, lease in rows)
