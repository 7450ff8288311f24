"""POST /v1/purchases/batch: each item answered as POST /v1/purchases would answer it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import create_test_app
from tests.helpers import (
    ApiDriver,
    buy,
    events_after,
    last_seq,
    ledger_is_sound,
    new_key,
    row_counts,
    share,
)

WRITTEN_BY_A_SALE = ("purchases", "rewards", "ledger_entries", "events", "fans")


@pytest.fixture
def world(api):
    artist, shop = api.artist(), api.storefront()
    return artist, shop, api.content(artist)


def item(content: dict[str, Any], key: str | None = None, **change: Any) -> dict[str, Any]:
    body = {
        "content_id": content["id"],
        "amount": content["price"],
        "currency": content["currency"],
        "buyer": {"email": f"{key or new_key()}@buyers.test"},
        "idempotency_key": key or new_key(),
    }
    body.update(change)
    return body


def batch(api: ApiDriver, shop: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return api.ok("POST", "/v1/purchases/batch", shop, {"purchases": items})["results"]  # type: ignore[no-any-return]


def single(api: ApiDriver, shop: Any, body: dict[str, Any]) -> Any:
    """What POST /v1/purchases answers for a batch item's body under its key."""
    unkeyed = {name: value for name, value in body.items() if name != "idempotency_key"}
    headers = {"Idempotency-Key": body["idempotency_key"]}
    return api.call("POST", "/v1/purchases", shop, unkeyed, headers=headers)


def without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in problem.items() if name != "request_id"}


def written(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in WRITTEN_BY_A_SALE}


def event_types(api: ApiDriver, seq: int) -> Counter[str]:
    return Counter(event["type"] for event in events_after(api.session, seq))


def test_each_item_answers_the_receipt_a_read_of_the_purchase_gives(api, world):
    _, shop, content = world
    results = batch(api, shop, [item(content), item(content, amount=500)])
    assert [r["status"] for r in results] == [201, 201]
    assert [r["replayed"] for r in results] == [False, False]
    for result in results:
        purchase = result["purchase"]
        assert api.ok("GET", f"/v1/purchases/{purchase['id']}", shop) == purchase
    assert results[1]["purchase"]["amount"] == 500
    ledger_is_sound(api.session)


def test_an_item_writes_what_the_same_purchase_alone_writes(api, world):
    _, shop, content = world
    a, b = api.chain(2)
    code = share(api, b, content["id"])
    before = row_counts(api.session)
    alone = single(api, shop, item(content, share_code=code)).get_json()
    after_single = row_counts(api.session)
    seq = last_seq(api.session)
    (result,) = batch(api, shop, [item(content, share_code=code)])
    after_batch = row_counts(api.session)
    assert written(after_single, after_batch) == written(before, after_single)
    in_batch = result["purchase"]
    assert [(r["level"], r["fan_id"], r["amount"]) for r in in_batch["rewards"]] == [
        (r["level"], r["fan_id"], r["amount"]) for r in alone["rewards"]
    ]
    assert [r["fan_id"] for r in in_batch["rewards"]] == [b.id, a.id]
    assert in_batch["attribution"] == alone["attribution"] == "link"
    assert (in_batch["artist_share"], in_batch["fee"]) == (alone["artist_share"], alone["fee"])
    assert event_types(api, seq) == {
        "fan.enrolled": 1,
        "purchase.recorded": 1,
        "reward.created": 2,
    }
    ledger_is_sound(api.session)


def test_events_are_written_for_each_item_and_none_for_a_failed_one(api, world):
    _, shop, content = world
    code = share(api, api.fan(), content["id"])
    seq = last_seq(api.session)
    items = [item(content, share_code=code) for _ in range(3)]
    results = batch(api, shop, [*items, item(content, currency="EUR", share_code=code)])
    assert [r["status"] for r in results] == [201, 201, 201, 422]
    assert event_types(api, seq) == {"fan.enrolled": 3, "purchase.recorded": 3, "reward.created": 3}
    recorded = [e for e in events_after(api.session, seq) if e["type"] == "purchase.recorded"]
    assert [e["data"]["id"] for e in recorded] == [r["purchase"]["id"] for r in results[:3]]


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"currency": "EUR"}, 422, "invalid", "currency"),
        ({"content_id": "cnt_nope"}, 404, "not_found", None),
        ({"amount": "1999"}, 422, "invalid", "amount"),
        ({"buyer": {}}, 422, "invalid", "buyer"),
        ({"buyer": {"fan_id": "fan_00000000000000000000"}}, 422, "invalid", "buyer"),
        ({"extra": 1}, 422, "invalid", "extra"),
    ],
)
def test_a_bad_item_fails_alone_with_the_problem_the_single_endpoint_answers(
    api, world, change, status, code, field
):
    _, shop, content = world
    bad = item(content, **change)
    before = row_counts(api.session)
    expected = single(api, shop, bad)
    assert row_counts(api.session) == before
    assert expected.status_code == status

    results = batch(api, shop, [item(content), bad, item(content)])
    assert [r["status"] for r in results] == [201, status, 201]
    problem = results[1]["problem"]
    assert without_request_id(problem) == without_request_id(expected.get_json())
    assert problem["code"] == code and problem["status"] == status
    assert problem["type"] == f"/problems/{code}" and problem["title"] and problem["detail"]
    if field is not None:
        assert field in problem["errors"]
    assert "purchase" not in results[1]

    # the two good items wrote what two sales write; the bad one nothing
    after = row_counts(api.session)
    assert written(before, after)["purchases"] == 2
    assert batch(api, shop, [bad])[0]["status"] == status
    assert row_counts(api.session) == after
    ledger_is_sound(api.session)


def test_a_missing_or_malformed_item_key_is_that_items_422(api, world):
    _, shop, content = world
    keyless = item(content)
    del keyless["idempotency_key"]
    results = batch(api, shop, [keyless, item(content, key=" "), item(content, key="k" * 256)])
    assert [r["status"] for r in results] == [422, 422, 422]
    assert all("idempotency_key" in r["problem"]["errors"] for r in results)


def test_a_replayed_batch_replays_each_item_and_writes_nothing(api, world):
    _, shop, content = world
    items = [item(content), item(content, content_id="cnt_nope"), item(content)]
    first = batch(api, shop, items)
    before = row_counts(api.session)
    again = batch(api, shop, items)
    assert row_counts(api.session) == before
    assert [r["status"] for r in again] == [201, 404, 201]
    for old, new in zip(first, again, strict=True):
        if old["status"] == 201:
            assert new["replayed"] is True and new["purchase"] == old["purchase"]
    ledger_is_sound(api.session)


def test_a_key_used_with_another_body_is_422_as_on_the_single_endpoint(api, world):
    _, shop, content = world
    first = item(content)
    batch(api, shop, [first])
    reused = {**first, "amount": first["amount"] - 1}
    expected = single(api, shop, reused).get_json()
    (result,) = batch(api, shop, [reused])
    assert result["status"] == 422
    assert result["problem"]["code"] == "idempotency_key_reused"
    assert without_request_id(result["problem"]) == without_request_id(expected)


def test_a_key_is_shared_with_the_single_endpoint(api, world):
    _, shop, content = world
    body = item(content)
    alone = single(api, shop, body)
    assert alone.status_code == 201
    (result,) = batch(api, shop, [body])
    assert result["replayed"] is True and result["purchase"] == alone.get_json()


def test_a_key_given_twice_in_one_batch_is_one_purchase(api, world):
    _, shop, content = world
    body = item(content)
    other = {**item(content), "idempotency_key": body["idempotency_key"]}
    results = batch(api, shop, [body, body, other])
    assert [r["status"] for r in results] == [201, 201, 422]
    assert results[1]["replayed"] is True
    assert results[1]["purchase"] == results[0]["purchase"]
    assert results[2]["problem"]["code"] == "idempotency_key_reused"


def test_a_batch_counts_each_new_sale_in_the_metrics_and_no_replay(api, world):
    _, shop, content = world

    def counted() -> float:
        return REGISTRY.get_sample_value("royalties_purchases_total", {"currency": "USD"}) or 0

    before = counted()
    items = [item(content), item(content), item(content, currency="EUR")]
    batch(api, shop, items)
    assert counted() == before + 2
    batch(api, shop, items)
    assert counted() == before + 2


@pytest.mark.parametrize(
    "body",
    [
        {"purchases": []},
        {"purchases": "all of them"},
        {"purchases": [1]},
        {},
        {"purchases": [], "extra": 1},
    ],
)
def test_a_body_that_is_not_a_list_of_purchases_is_refused_whole(api, world, body):
    _, shop, _ = world
    before = row_counts(api.session)
    response = api.call("POST", "/v1/purchases/batch", shop, body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == "invalid"
    assert row_counts(api.session) == before


def test_more_than_500_items_are_refused_whole(api, world):
    _, shop, content = world
    items = [item(content) for _ in range(501)]
    before = row_counts(api.session)
    response = api.call("POST", "/v1/purchases/batch", shop, {"purchases": items})
    assert response.status_code == 422
    assert "purchases" in response.get_json()["errors"]
    assert row_counts(api.session) == before


def test_500_items_fit_the_body_limit(api, world):
    _, shop, content = world
    code = share(api, api.fan(), content["id"])
    items = [item(content, share_code=code, client_ip="198.51.100.7") for _ in range(500)]
    results = batch(api, shop, items)
    assert len(results) == 500 and {r["status"] for r in results} == {201}
    assert all(len(r["purchase"]["rewards"]) == 1 for r in results)
    ledger_is_sound(api.session)


def test_only_a_storefront_may_send_a_batch(api, world):
    artist, _, content = world
    body = {"purchases": [item(content)]}
    before = row_counts(api.session)
    assert api.call("POST", "/v1/purchases/batch", artist, body).status_code == 403
    assert api.call("POST", "/v1/purchases/batch", api.admin, body).status_code == 403
    assert api.call("POST", "/v1/purchases/batch", None, body).status_code == 401
    assert row_counts(api.session) == before


def test_a_batch_spends_one_unit_of_the_sales_budget_per_item(engine, db_url, session):
    api = ApiDriver(
        create_test_app(engine, db_url, RATELIMIT_SALES="6/minute").test_client(), session
    )
    artist, shop = api.artist(), api.storefront()
    content = api.content(artist)
    assert len(batch(api, shop, [item(content) for _ in range(4)])) == 4  # 4 spent
    before = row_counts(api.session)
    refused = api.call(
        "POST", "/v1/purchases/batch", shop, {"purchases": [item(content) for _ in range(3)]}
    )
    assert refused.status_code == 429  # 3 do not fit in the 2 left; the refusal costs 1
    assert refused.get_json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert row_counts(api.session) == before
    buy(api, shop, content, {"email": "last@buyers.test"})  # the 6th unit
    buy(api, shop, content, {"email": "over@buyers.test"}, status=429)


def test_the_operation_is_documented(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/purchases/batch"]["post"]
    assert operation["summary"] and "idempotency_key" in operation["description"]
    assert {"200", "401", "403", "413", "422", "429"} <= set(operation["responses"])
    assert "RATELIMIT_SALES" in operation["responses"]["429"]["description"]
    assert "MAX_BATCH_BODY_BYTES" in operation["responses"]["413"]["description"]


# -- the batch writes what the same sales sent one by one write -------------------------


def _scenario(api: ApiDriver, tag: str) -> tuple[Any, list[dict[str, Any]], dict[str, str]]:
    """A storefront, a list of sales and the names of the fans they involve, built the
    same way under ``tag``: two of these differ only in ids and emails. The sales cover
    what a batch must not get wrong by writing sales together: a new buyer, the same
    buyer again, a sponsor-less fan whose first touch gives it a sponsor (which moves
    the upline a later sale in the batch reads), a repeated key, a failing sale, a
    buyer by external id and by fan id, a sale without a link."""
    artist, shop = api.artist(), api.storefront()
    content = api.content(artist)
    top, middle, near = api.chain(3)
    loner = api.fan()  # no sponsor: its first purchase through a link gives it one
    below = api.fan(ref=loner.id)
    near_code, below_code = share(api, near, content["id"]), share(api, below, content["id"])
    names = {top.id: "top", middle.id: "middle", near.id: "near", loner.id: "loner"}
    names[below.id] = "below"
    first = item(content, f"{tag}-1", share_code=near_code, buyer={"email": f"x1@{tag}.test"})
    sales = [
        first,
        item(content, f"{tag}-2", share_code=near_code, buyer={"email": f"x1@{tag}.test"}),
        item(content, f"{tag}-3", share_code=near_code, buyer={"fan_id": loner.id}),
        item(content, f"{tag}-4", share_code=below_code, buyer={"email": f"x2@{tag}.test"}),
        item(content, f"{tag}-5", share_code=near_code, currency="EUR"),
        first,
        item(content, f"{tag}-7", buyer={"email": f"x3@{tag}.test"}),
        item(content, f"{tag}-8", share_code=near_code, buyer={"external_id": f"cust-{tag}"}),
        item(content, f"{tag}-9", share_code=near_code, buyer={"fan_id": middle.id}),
        item(content, f"{tag}-10", share_code=below_code, amount=1),
    ]
    return shop, sales, names


def _shape(result: dict[str, Any], names: dict[str, str], buyers: dict[str, str]) -> Any:
    """A result without its ids: who earned what, by role in the scenario."""
    if result["status"] != 201:
        return result["status"], without_request_id(result["problem"])
    receipt = result["purchase"]
    buyer = names.get(receipt["buyer_id"]) or buyers.setdefault(
        receipt["buyer_id"], f"new buyer {len(buyers) + 1}"
    )
    return (
        result.get("replayed", False),
        buyer,
        receipt["attribution"],
        [
            (r["level"], names.get(r["fan_id"], r["fan_id"]), r["amount"])
            for r in receipt["rewards"]
        ],
        (receipt["amount"], receipt["artist_share"], receipt["fee"], receipt["warnings"]),
    )


def test_a_batch_records_what_the_same_sales_sent_one_by_one_record(api):
    shop, sales, names = _scenario(api, "one")
    before = row_counts(api.session)
    alone = []
    for body in sales:
        response = single(api, shop, body)
        answer = response.get_json()
        if response.status_code == 201:
            replayed = response.headers.get("Idempotent-Replayed") == "true"
            alone.append({"status": 201, "purchase": answer, "replayed": replayed})
        else:
            alone.append({"status": response.status_code, "problem": answer})
    after_alone = row_counts(api.session)
    shop_b, sales_b, names_b = _scenario(api, "two")
    before_b = row_counts(api.session)
    together = batch(api, shop_b, sales_b)
    after_batch = row_counts(api.session)

    assert [_shape(r, names_b, {}) for r in together] == [_shape(r, names, {}) for r in alone]
    assert written(before_b, after_batch) == written(before, after_alone)
    # The first touch in sale 3 gave the loner a sponsor before sale 4 read its upline.
    assert [r["fan_id"] for r in together[3]["purchase"]["rewards"]][:3] == [
        next(fan for fan, name in names_b.items() if name == role)
        for role in ("below", "loner", "near")
    ]
    ledger_is_sound(api.session)


def test_a_batch_whose_writes_fail_records_each_sale_alone(api, world, monkeypatch):
    from sqlalchemy.exc import IntegrityError

    from royalties.services import purchase_batch

    _, shop, content = world
    code = share(api, api.fan(), content["id"])
    failures = []

    def fail_once(*args: Any, **kwargs: Any) -> None:
        if not failures:  # the segment's write; the sales alone then write their own
            failures.append(1)
            raise IntegrityError("INSERT", {}, Exception("a concurrent request took the email"))
        write_bookings(*args, **kwargs)

    from royalties.services.purchases import write_bookings

    monkeypatch.setattr(purchase_batch, "write_bookings", fail_once)
    before = row_counts(api.session)
    results = batch(api, shop, [item(content, share_code=code) for _ in range(3)])
    assert failures == [1]
    assert [r["status"] for r in results] == [201, 201, 201]
    assert written(before, row_counts(api.session))["purchases"] == 3
    ledger_is_sound(api.session)


@pytest.mark.parametrize("buyers", ["each new", "one fan without a sponsor"])
def test_a_batch_costs_the_same_few_statements_for_5_sales_or_50(api, world, engine, buyers):
    from sqlalchemy import event

    _, shop, content = world
    code = share(api, api.chain(3)[-1], content["id"])
    counts = []
    for n in (5, 50):
        # One fan buying again and again: its first sale gives it a sponsor (alone), the
        # rest are written together.
        fan = {"fan_id": api.fan().id} if buyers != "each new" else None
        statements: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any, into=statements) -> None:
            into.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            sales = [
                item(content, share_code=code, **({"buyer": fan} if fan else {})) for _ in range(n)
            ]
            results = batch(api, shop, sales)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert [r["status"] for r in results] == [201] * n
        assert {len(r["purchase"]["rewards"]) for r in results[1:]} == {3}
        if engine.dialect.name == "sqlite":
            # In process, no round trip to save: SQLAlchemy inserts rows whose ids it
            # must return in order one at a time there (on PostgreSQL in one statement).
            statements = [s for s in statements if "INTO ledger_transactions" not in s]
        counts.append(len(statements))
    # A dozen reads and writes for the batch (and, for the one fan, a sale alone first).
    assert counts[0] == counts[1] < 40, counts
