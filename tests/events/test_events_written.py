"""Every change of money is an event written in the same transaction as the change,
carrying the object as the API shows it (the outbox's writing side)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from royalties import idempotency
from royalties.db import utcnow
from royalties.models import Reward
from tests.helpers import buy, events_after, last_seq, refund, row_counts, share


def rewards_of(api: Any, fan: Any) -> dict[str, dict[str, Any]]:
    page = api.ok("GET", f"/v1/fans/{fan.id}/rewards", fan)
    return {item["id"]: item for item in page["items"]}


@pytest.fixture
def sale(api: Any) -> dict[str, Any]:
    artist, shop = api.artist(), api.storefront()
    ann = api.fan("ann")
    bob = api.fan("bob", ref=ann.id)
    song = api.content(artist)
    code = share(api, bob, song["id"])
    return {"artist": artist, "shop": shop, "ann": ann, "bob": bob, "song": song, "code": code}


def test_a_sale_through_a_link_writes_its_purchase_rewards_and_new_buyer(api, session, sale):
    before = last_seq(session)
    receipt = buy(
        api, sale["shop"], sale["song"], {"email": "new@buyer.test"}, share_code=sale["code"]
    )
    events = events_after(session, before)
    assert [e["type"] for e in events] == [
        "fan.enrolled",
        "purchase.recorded",
        "reward.created",
        "reward.created",
    ]
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids) and all(i.startswith("evt_") for i in ids)
    enrolled, recorded, *created = events
    assert enrolled["data"] == api.ok("GET", f"/v1/fans/{receipt['buyer_id']}", api.admin)
    assert enrolled["_whose"] == (sale["shop"].id, None, None)
    assert recorded["data"] == receipt
    assert recorded["_whose"] == (sale["shop"].id, sale["artist"].id, None)
    shown = {**rewards_of(api, sale["bob"]), **rewards_of(api, sale["ann"])}
    assert [e["data"] for e in created] == [shown[e["data"]["id"]] for e in created]
    assert [e["data"]["fan_id"] for e in created] == [sale["bob"].id, sale["ann"].id]
    assert created[0]["_whose"] == (sale["shop"].id, sale["artist"].id, sale["bob"].id)


def test_a_purchase_that_fails_validation_writes_no_event(api, session, sale):
    before = row_counts(session)
    payload = {
        "content_id": sale["song"]["id"],
        "amount": 1999,
        "currency": "EUR",  # the song is sold in USD
        "buyer": {"email": "x@buyer.test"},
    }
    response = api.call(
        "POST", "/v1/purchases", sale["shop"], payload, headers={"Idempotency-Key": "k-1"}
    )
    assert response.status_code == 422
    assert row_counts(session) == before


def test_a_purchase_rolled_back_after_its_events_leaves_none(api, session, sale, monkeypatch):
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the disk is full")

    # After the last write (on PostgreSQL every write is one statement, then this check).
    monkeypatch.setattr(idempotency, "check_completed", fail)
    before = row_counts(session)
    response = api.call(
        "POST",
        "/v1/purchases",
        sale["shop"],
        {
            "content_id": sale["song"]["id"],
            "amount": 1999,
            "currency": "USD",
            "buyer": {"email": "y@buyer.test"},
            "share_code": sale["code"],
        },
        headers={"Idempotency-Key": "k-2"},
    )
    assert response.status_code == 500
    after = row_counts(session)
    assert after["events"] == before["events"]
    assert after["purchases"] == before["purchases"]


def test_a_refund_writes_itself_and_each_reward_it_reversed(api, session, sale):
    receipt = buy(
        api, sale["shop"], sale["song"], {"email": "r@buyer.test"}, share_code=sale["code"]
    )
    before = last_seq(session)
    body = refund(api, sale["shop"], receipt["id"], 999)
    events = events_after(session, before)
    assert [e["type"] for e in events] == ["refund.recorded", "reward.reversed", "reward.reversed"]
    assert events[0]["data"] == body
    assert events[0]["_whose"] == (sale["shop"].id, sale["artist"].id, None)
    shown = {**rewards_of(api, sale["bob"]), **rewards_of(api, sale["ann"])}
    for event in events[1:]:
        assert event["data"] == shown[event["data"]["id"]]
        assert event["data"]["reversed_amount"] > 0


def test_maturing_writes_reward_available_once(api, session, sale):
    buy(api, sale["shop"], sale["song"], {"email": "m@buyer.test"}, share_code=sale["code"])
    session.execute(update(Reward).values(available_at=utcnow() - timedelta(minutes=1)))
    session.commit()
    before = last_seq(session)
    shown = rewards_of(api, sale["bob"])  # reading the rewards matures the due ones
    events = events_after(session, before)
    assert [e["type"] for e in events] == ["reward.available"]
    assert events[0]["data"] == next(iter(shown.values()))
    assert events[0]["data"]["state"] == "available"
    rewards_of(api, sale["bob"])
    assert events_after(session, before) == events  # matured once, announced once
