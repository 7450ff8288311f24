"""The purchase and refund endpoints: validation, roles, idempotency, holds, reads."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from royalties.db import utcnow
from royalties.models import Event, Purchase, Reward
from tests.helpers import buy, ledger_is_sound, new_key, refund, row_counts, share


@pytest.fixture
def world(api):
    artist, shop = api.artist(), api.storefront()
    return artist, shop, api.content(artist)


def post_purchase(api, shop, payload, key="k-1"):
    headers = {"Idempotency-Key": key} if key else {}
    return api.call("POST", "/v1/purchases", shop, payload, headers=headers)


def payload(item, **change):
    body = {
        "content_id": item["id"],
        "amount": 1999,
        "currency": "USD",
        "buyer": {"email": "b@x.io"},
    }
    body.update(change)
    return body


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"amount": 0}, 422, "amount"),
        ({"amount": -5}, 422, "amount"),
        ({"amount": 19.99}, 422, "amount"),
        ({"amount": "1999"}, 422, "amount"),
        ({"amount": 10**15}, 422, "amount"),
        ({"currency": "EUR"}, 422, "currency"),
        ({"currency": "ABC"}, 422, "currency"),
        ({"buyer": {}}, 422, "buyer"),
        ({"buyer": {"email": "a@b.io", "fan_id": "fan_x"}}, 422, "buyer"),
        ({"buyer": {"fan_id": "fan_00000000000000000000"}}, 422, "buyer"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_invalid_purchases_are_refused_and_write_nothing(api, world, change, status, field):
    _, shop, item = world
    before = row_counts(api.session)
    response = post_purchase(api, shop, payload(item, **change))
    assert response.status_code == status, response.get_json()
    assert field in response.get_json()["errors"]
    assert row_counts(api.session) == before


def test_the_currency_is_accepted_in_either_case(api, world):
    _, shop, item = world
    assert post_purchase(api, shop, payload(item, currency="usd")).status_code == 201


def test_unknown_content_is_404_and_writes_nothing(api, world):
    _, shop, item = world
    before = row_counts(api.session)
    response = post_purchase(api, shop, payload(item, content_id="cnt_nope"))
    assert response.status_code == 404
    assert row_counts(api.session) == before


def test_a_missing_or_overlong_idempotency_key_is_400(api, world):
    _, shop, item = world
    assert post_purchase(api, shop, payload(item), key=None).status_code == 400
    response = post_purchase(api, shop, payload(item), key="k" * 256)
    assert response.status_code == 400
    assert response.get_json()["code"] == "idempotency_key_missing"


def test_the_same_key_and_body_replays_the_first_response_and_records_nothing(api, world):
    _, shop, item = world
    first = post_purchase(api, shop, payload(item))
    counts = row_counts(api.session)
    again = post_purchase(api, shop, payload(item))
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert row_counts(api.session) == counts


def test_the_same_key_with_another_body_is_422(api, world):
    _, shop, item = world
    post_purchase(api, shop, payload(item))
    response = post_purchase(api, shop, payload(item, amount=1000))
    assert response.status_code == 422
    assert response.get_json()["code"] == "idempotency_key_reused"


def test_keys_are_scoped_to_the_storefront(api, world):
    _, shop, item = world
    other = api.storefront("Other")
    a = post_purchase(api, shop, payload(item)).get_json()
    b = post_purchase(api, other, payload(item)).get_json()
    assert a["id"] != b["id"]


def test_a_failed_request_releases_its_key_for_a_corrected_retry(api, world):
    _, shop, item = world
    assert post_purchase(api, shop, payload(item, currency="EUR")).status_code == 422
    assert post_purchase(api, shop, payload(item, currency="EUR")).status_code == 422
    # the first body never committed, so the key is free for the corrected body
    assert post_purchase(api, shop, payload(item)).status_code == 201


def count(api, model):
    api.session.rollback()
    return api.session.scalar(select(func.count()).select_from(model))


def _in_flight_record(api, shop, key, body, age):
    """A claim as an earlier version committed it before its work (then crashed)."""
    from royalties import idempotency
    from royalties.models import IdempotencyRecord

    scope = "POST /v1/purchases"
    api.session.add(
        IdempotencyRecord(
            client_id=shop.id,
            key=key,
            scope=scope,
            request_hash=idempotency.fingerprint(scope, body),
            state="in_flight",
            created_at=utcnow() - age,
        )
    )
    api.session.commit()


def test_a_key_in_flight_is_409(api, world):
    _, shop, item = world
    body = payload(item)
    _in_flight_record(api, shop, "busy", body, age=timedelta(seconds=5))
    response = post_purchase(api, shop, body, key="busy")
    assert response.status_code == 409
    assert response.get_json()["code"] == "idempotency_in_flight"
    assert count(api, Purchase) == 0


def test_a_stale_in_flight_claim_is_taken_over(api, world):
    from royalties.idempotency import STALE_AFTER

    _, shop, item = world
    body = payload(item)
    _in_flight_record(api, shop, "crashed", body, age=STALE_AFTER + timedelta(seconds=1))
    first = post_purchase(api, shop, body, key="crashed")
    assert first.status_code == 201, first.get_json()
    again = post_purchase(api, shop, body, key="crashed")
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert count(api, Purchase) == 1


@pytest.mark.parametrize("role", ["fan", "artist", "admin"])
def test_only_storefronts_record_purchases(api, world, role):
    artist, _, item = world
    actor = {"fan": api.fan, "artist": lambda: artist, "admin": lambda: api.admin}[role]()
    assert post_purchase(api, actor, payload(item)).status_code == 403
    assert post_purchase(api, None, payload(item)).status_code == 401


def test_only_the_recording_storefront_refunds_or_reads_a_purchase(api, world):
    _, shop, item = world
    other = api.storefront("Other")
    sale = buy(api, shop, item, {"email": "r@x.io"})
    assert refund(api, other, sale["id"], 100, status=403)["code"] == "forbidden"
    assert api.call("GET", f"/v1/purchases/{sale['id']}", other).status_code == 404
    assert refund(api, shop, "pur_nope", 100, status=404)["code"] == "not_found"
    assert api.ok("GET", f"/v1/purchases/{sale['id']}", api.admin)["id"] == sale["id"]


@pytest.mark.parametrize("amount", [0, -1, 1.5, "10"])
def test_invalid_refund_amounts_are_422(api, world, amount):
    _, shop, item = world
    sale = buy(api, shop, item, {"email": "r@x.io"})
    before = row_counts(api.session)
    refund(api, shop, sale["id"], amount, status=422)
    assert row_counts(api.session) == before


def test_refund_replays_under_the_same_key(api, world):
    _, shop, item = world
    sale = buy(api, shop, item, {"email": "r@x.io"})
    path = f"/v1/purchases/{sale['id']}/refunds"
    first = api.ok("POST", path, shop, {"amount": 500}, 201, headers={"Idempotency-Key": "r1"})
    again = api.ok("POST", path, shop, {"amount": 500}, 201, headers={"Idempotency-Key": "r1"})
    assert first == again
    assert api.ok("GET", f"/v1/purchases/{sale['id']}", shop)["refunded_amount"] == 500


def test_hold_days_zero_makes_rewards_available_at_once(api, world):
    artist, shop, item = world
    api.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [500], "hold_days": 0},
    )
    sharer = api.fan()
    buy(api, shop, item, {"email": "h@x.io"}, share_code=share(api, sharer, item["id"]))
    body = api.ok("GET", f"/v1/fans/{sharer.id}/balance", sharer)
    assert body["balances"] == [{"currency": "USD", "pending": 0, "available": 99, "paid": 0}]
    items = api.ok("GET", f"/v1/fans/{sharer.id}/rewards", sharer)["items"]
    assert [i["state"] for i in items] == ["available"]


def test_a_refund_after_rewards_became_available_takes_from_available(api, world):
    artist, shop, item = world
    api.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [500], "hold_days": 0},
    )
    sharer = api.fan()
    sale = buy(api, shop, item, {"email": "h@x.io"}, share_code=share(api, sharer, item["id"]))
    refund(api, shop, sale["id"], 1999)
    body = api.ok("GET", f"/v1/fans/{sharer.id}/balance", sharer)
    assert body["balances"][0]["available"] == 0 and body["balances"][0]["pending"] == 0
    ledger_is_sound(api.session)


def test_rewards_are_paginated_newest_first(api, world):
    _, shop, item = world
    sharer = api.fan()
    code = share(api, sharer, item["id"])
    for i in range(5):
        buy(api, shop, item, {"external_id": f"c{i}"}, share_code=code, amount=1000 + 20 * i)
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = api.ok("GET", f"/v1/fans/{sharer.id}/rewards{query}", sharer)
        seen += [i["amount"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [54, 53, 52, 51, 50]
    assert api.call("GET", f"/v1/fans/{sharer.id}/rewards?cursor=%%%", sharer).status_code == 422


def test_balances_and_rewards_are_only_for_that_fan_or_admin(api, world):
    _, shop, _ = world
    ann, bob = api.fan(), api.fan()
    for path in (f"/v1/fans/{ann.id}/balance", f"/v1/fans/{ann.id}/rewards"):
        assert api.call("GET", path, bob).status_code == 403
        assert api.call("GET", path, shop).status_code == 403
        assert api.call("GET", path, None).status_code == 401
        assert api.call("GET", path, api.admin).status_code == 200
    assert api.call("GET", "/v1/fans/fan_nope/balance", api.admin).status_code == 404


def test_replayed_keys_never_double_book(api, world):
    _, shop, item = world
    key = new_key()
    for _ in range(3):
        buy(api, shop, item, {"email": "d@x.io"}, key=key)
    ledger_is_sound(api.session)
    counts = row_counts(api.session)
    assert counts["purchases"] == 1


def test_the_ids_a_sale_writes_sort_in_the_order_sales_were_recorded(api, world):
    """Purchases, rewards and events get ordered ids (royalties/ids.py), so their indexes
    grow at one end; a later sale's ids sort after an earlier one's."""
    _, shop, item = world
    code = share(api, api.fan(), item["id"])
    sales = []
    for i in range(3):
        sales.append(buy(api, shop, item, {"external_id": f"o{i}"}, share_code=code)["id"])
        time.sleep(0.002)  # ids of one millisecond may sort either way
    assert sales == sorted(sales)
    rewards = api.session.scalars(
        select(Reward.id).join(Purchase).order_by(Purchase.created_at, Reward.level)
    ).all()
    assert len(rewards) == 3 and rewards[0] < rewards[1] < rewards[2]
    events = api.session.scalars(select(Event.id).order_by(Event.seq)).all()
    assert len(events) >= 6
    assert [e[:13] for e in events] == sorted(e[:13] for e in events)  # by millisecond


def test_a_sale_is_written_in_one_statement_on_postgresql(api, world, engine):
    """Its purchase, rewards, ledger accounts, transaction and entries, events and
    idempotency record: one round trip on PostgreSQL (data-modifying CTEs); on SQLite,
    in process, one statement per table."""
    from sqlalchemy import event

    _artist, shop, item = world
    code = share(api, api.chain(3)[-1], item["id"])
    fan = {"fan_id": api.fan().id}
    buy(api, shop, item, fan, share_code=code, key="warm-up")  # its first sale: a sponsor
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_rest):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        receipt = buy(api, shop, item, fan, share_code=code, key="counted")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(receipt["rewards"]) == 3
    writes = [s for s in seen if s.lstrip().upper().startswith(("INSERT", "WITH", "UPDATE"))]
    tables = ("purchases", "rewards", "ledger_accounts", "ledger_transactions")
    tables += ("ledger_entries", "events", "idempotency_records")
    if engine.dialect.name == "postgresql":
        assert len(writes) == 1, writes
    assert all(any(f"INSERT INTO {name} " in w for w in writes) for name in tables)
    ledger_is_sound(api.session)
