"""Hostile input gets a clear 4xx problem and writes nothing, on SQLite and PostgreSQL.

One test per class of hostile value, each trying its values on every endpoint they fit
and checking the status, that the answer is problem+json, and that no table gained or
lost a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy.engine import Engine
from werkzeug.test import TestResponse

from api.dev.fake_stripe import sign_payload
from tests.api.live import live_server
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, buy, new_key, row_counts, share

MAX_BODY = 64 * 1024


@dataclass
class Shop:
    api: ApiDriver
    artist: Actor
    storefront: Actor
    fan: Actor
    item: dict[str, Any]
    sale: dict[str, Any]
    code: str


@pytest.fixture
def shop(api: ApiDriver) -> Shop:
    artist, storefront, fan = api.artist(), api.storefront(), api.fan()
    item = api.content(artist)
    code = share(api, fan, item["id"])
    sale = buy(api, storefront, item, {"email": "buyer@x.test"}, share_code=code)
    return Shop(api, artist, storefront, fan, item, sale, code)


def refused(
    api: ApiDriver, send: Callable[[], TestResponse], status: int, *, problem: bool = True
) -> dict[str, Any]:
    """Send, and check the status, the problem+json answer and that nothing was written."""
    before = row_counts(api.session)
    response = send()
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert row_counts(api.session) == before
    if not problem:
        return {}
    assert response.mimetype == "application/problem+json", response.mimetype
    body = response.get_json()
    assert body["status"] == status and body["type"].endswith("/" + body["code"])
    return body  # type: ignore[no-any-return]


def purchase(shop: Shop, **changes: Any) -> dict[str, Any]:
    payload = {
        "content_id": shop.item["id"],
        "amount": 1999,
        "currency": "USD",
        "buyer": {"email": "other@x.test"},
    }
    payload.update(changes)
    return payload


def post_purchase(
    shop: Shop, payload: Any, actor: Actor | None = None, key: str | None = None
) -> Callable[[], TestResponse]:
    headers = {"Idempotency-Key": key or new_key()}
    return sender(shop.api, "POST", "/v1/purchases", actor or shop.storefront, payload, headers)


def post_refund(
    shop: Shop, payload: Any, purchase_id: str | None = None, key: str | None = None
) -> Callable[[], TestResponse]:
    path = f"/v1/purchases/{purchase_id or shop.sale['id']}/refunds"
    headers = {"Idempotency-Key": key or new_key()}
    return sender(shop.api, "POST", path, shop.storefront, payload, headers)


def post_content(shop: Shop, **changes: Any) -> Callable[[], TestResponse]:
    payload = {
        "title": "Song",
        "kind": "track",
        "price": 1999,
        "currency": "USD",
        "storefront_url": "https://shop.test/song",
    }
    payload.update(changes)
    return sender(shop.api, "POST", "/v1/content", shop.artist, payload)


def sender(
    api: ApiDriver,
    method: str,
    path: str,
    actor: Actor | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Callable[[], TestResponse]:
    return lambda: api.call(method, path, actor, body, headers)


def raw(
    api: ApiDriver,
    path: str,
    actor: Actor | None,
    data: bytes | str,
    content_type: str | None,
    method: str = "POST",
) -> Callable[[], TestResponse]:
    """Send ``data`` as it is, with an Idempotency-Key where one is needed."""
    headers = {"Content-Type": content_type} if content_type else {}
    if path.startswith("/v1/purchases"):
        headers["Idempotency-Key"] = new_key()
    return lambda: api.call(method, path, actor, headers=headers, data=data)


# money ------------------------------------------------------------------------------


def test_huge_zero_or_negative_amounts_are_422_and_write_nothing(shop):
    for amount in (-1, -(10**12), 0, 10**12 + 1, 2**63, 10**30, 10**4000):
        send = post_purchase(shop, purchase(shop, amount=amount))
        assert "amount" in refused(shop.api, send, 422)["errors"], amount
        assert "amount" in refused(shop.api, post_refund(shop, {"amount": amount}), 422)["errors"]
        if amount != 0:  # a free item is allowed
            assert "price" in refused(shop.api, post_content(shop, price=amount), 422)["errors"]


def test_floats_numeric_strings_and_other_types_are_not_money(shop):
    for amount in (19.99, 1999.0, "1999", "19.99", "1e3", True, None, [1999], {"cents": 1999}):
        send = post_purchase(shop, purchase(shop, amount=amount))
        assert "amount" in refused(shop.api, send, 422)["errors"], amount
        assert "amount" in refused(shop.api, post_refund(shop, {"amount": amount}), 422)["errors"]
        assert "price" in refused(shop.api, post_content(shop, price=amount), 422)["errors"]


def test_an_exponent_that_overflows_a_float_is_not_money(shop):
    body = json.dumps(purchase(shop)).replace("1999", "1e400")
    send = raw(shop.api, "/v1/purchases", shop.storefront, body, "application/json")
    assert "amount" in refused(shop.api, send, 422)["errors"]


def test_unknown_currencies_are_422(shop):
    for currency in ("XXX", "ABC", "EURO", "US", "", "€€€", "U$D", 840, None):
        send = post_purchase(shop, purchase(shop, currency=currency))
        assert "currency" in refused(shop.api, send, 422)["errors"], currency
        send = post_content(shop, currency=currency)
        assert "currency" in refused(shop.api, send, 422)["errors"], currency


# strings ----------------------------------------------------------------------------


def test_over_long_strings_are_422(shop):
    api, long = shop.api, "x" * 60_000
    cases: list[tuple[str, Actor | None, dict[str, Any], str]] = [
        ("/v1/artists", api.admin, {"name": "a" * 201}, "name"),
        ("/v1/artists", api.admin, {"name": long}, "name"),
        (
            "/v1/storefronts",
            api.admin,
            {"name": "s", "base_url": f"https://x.io/{long}"},
            "base_url",
        ),
        ("/v1/fans", None, {"handle": "h" * 65}, "handle"),
        ("/v1/fans", None, {"handle": "ok_handle", "email": "e" * 320 + "@x.io"}, "email"),
        ("/v1/fans", None, {"handle": "ok_handle", "ref": "r" * 65}, "ref"),
        ("/v1/share-links", shop.fan, {"content_id": "c" * 65}, "content_id"),
    ]
    for path, actor, body, field in cases:
        assert field in refused(api, sender(api, "POST", path, actor, body), 422)["errors"]
    assert "title" in refused(api, post_content(shop, title="t" * 301), 422)["errors"]
    for buyer in ({"external_id": "e" * 256}, {"fan_id": "f" * 65}):
        send = post_purchase(shop, purchase(shop, buyer=buyer))
        assert "buyer" in refused(api, send, 422)["errors"]
    send = post_purchase(shop, purchase(shop, share_code="s" * 65))
    assert "share_code" in refused(api, send, 422)["errors"]


def test_control_characters_in_text_are_422(shop):
    api = shop.api
    for text in ("a\nb", "a\rb", "tab\there", "bell\x07", "esc\x1b[31m", "del\x7f", "end\n"):
        send = sender(api, "POST", "/v1/artists", api.admin, {"name": text})
        assert "name" in refused(api, send, 422)["errors"], text
        assert "title" in refused(api, post_content(shop, title=text), 422)["errors"]
        send = sender(api, "POST", "/v1/fans", None, {"handle": text})
        assert "handle" in refused(api, send, 422)["errors"]
        send = post_purchase(shop, purchase(shop, buyer={"external_id": text}))
        assert "buyer" in refused(api, send, 422)["errors"]


def test_nul_or_unpaired_surrogates_anywhere_in_a_body_are_422(shop):
    """PostgreSQL text cannot hold a NUL; no database can store half a surrogate pair."""
    for bad in ("\x00", "\ud800"):
        for send, where in _bodies_holding(shop, bad):
            assert where in refused(shop.api, send, 422)["errors"], (where, bad)


def _bodies_holding(shop: Shop, bad: str) -> list[tuple[Callable[[], TestResponse], str]]:
    api = shop.api
    return [
        (post_purchase(shop, purchase(shop, content_id=f"cnt{bad}x")), "content_id"),
        (post_purchase(shop, purchase(shop, share_code=f"{shop.code}{bad}")), "share_code"),
        (post_purchase(shop, purchase(shop, buyer={"email": f"a{bad}@x.io"})), "buyer.email"),
        (post_purchase(shop, purchase(shop, buyer={"fan_id": bad})), "buyer.fan_id"),
        (post_purchase(shop, purchase(shop, buyer={f"fan_id{bad}": "x"})), "buyer"),
        (sender(api, "POST", "/v1/fans", None, {"handle": "h", "ref": bad}), "ref"),
        (sender(api, "POST", "/v1/share-links", shop.fan, {"content_id": bad}), "content_id"),
        (sender(api, "POST", "/v1/artists", api.admin, {"name": [f"x{bad}"]}), "name.0"),
    ]


# malformed requests -----------------------------------------------------------------


MALFORMED_JSON = {
    "syntax": b"{not json",
    "missing value": b'{"name": }',
    "trailing garbage": b'{"name": "Ada"} trailing',
    "5000 deep": b"[" * 5000 + b"]" * 5000,
    "40 deep": b'{"a":' * 40 + b"1" + b"}" * 40,
    "NaN": b'{"name": NaN}',
    "Infinity": b'{"name": "Ada", "x": -Infinity}',
    "5000 digits": b'{"name": ' + b"9" * 5000 + b"}",
    "bad UTF-8": b'{"name": "\xff\xfe"}',
    "blank": b" ",
}


def test_invalid_json_is_400(api):
    for name, body in MALFORMED_JSON.items():
        for path, actor in (("/v1/artists", api.admin), ("/v1/fans", None)):
            problem = refused(api, raw(api, path, actor, body, "application/json"), 400)
            assert problem["code"] == "bad_request", name


OTHER_CONTENT_TYPES = [
    ('{"name": "Ada"}', "text/plain"),
    ("name=Ada", "application/x-www-form-urlencoded"),
    (
        '--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nAda\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    ("<name>Ada</name>", "application/xml"),
    ('{"name": "Ada"}', None),
]


def test_a_json_endpoint_sent_another_content_type_is_415(shop):
    api = shop.api
    for data, content_type in OTHER_CONTENT_TYPES:
        for method, path, actor in (
            ("POST", "/v1/artists", api.admin),
            ("POST", "/v1/fans", None),
            ("POST", "/v1/purchases", shop.storefront),
            ("POST", f"/v1/purchases/{shop.sale['id']}/refunds", shop.storefront),
            ("PUT", f"/v1/artists/{shop.artist.id}/reward-plan", shop.artist),
        ):
            send = raw(api, path, actor, data, content_type, method)
            assert refused(api, send, 415)["code"] == "unsupported_media_type", content_type


def test_a_body_over_the_limit_is_413(shop):
    api = shop.api
    big = json.dumps({"name": "x" * MAX_BODY})
    for path, actor in (("/v1/artists", api.admin), ("/v1/fans", None), ("/v1/purchases", None)):
        send = raw(api, path, actor, big, "application/json")
        assert refused(api, send, 413)["code"] == "body_too_large"


@pytest.fixture
def live(engine: Engine, db_url: str) -> Iterator[str]:
    with live_server(create_test_app(engine, db_url)) as base:
        yield base


def _chunks(payload: bytes, size: int = 4096) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_a_chunked_body_without_a_length_is_held_to_the_same_limit(api, live):
    before = row_counts(api.session)
    url = f"{live}/v1/fans"
    headers = {"Content-Type": "application/json"}  # requests sends a generator chunked
    big = json.dumps({"handle": "chunky", "email": "x" * MAX_BODY + "@x.io"}).encode()
    response = requests.post(url, data=_chunks(big), headers=headers, timeout=10)
    assert response.status_code == 413, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "body_too_large"
    assert row_counts(api.session) == before
    # ...while a small chunked body is read as usual
    small = json.dumps({"handle": "chunky"}).encode()
    response = requests.post(url, data=_chunks(small, 5), headers=headers, timeout=10)
    assert response.status_code == 201, response.text


# headers ----------------------------------------------------------------------------


def test_idempotency_keys_over_255_chars_or_not_printable_ascii_are_400(shop):
    for key in ("k" * 256, "k" * 5000, " ", "caf\u00e9", "tab\there"):
        send = post_purchase(shop, purchase(shop), key=key)
        assert refused(shop.api, send, 400)["code"] == "idempotency_key_missing", key
        send = post_refund(shop, {"amount": 1}, key=key)
        assert refused(shop.api, send, 400)["code"] == "idempotency_key_missing", key


def test_api_keys_over_255_chars_are_401(shop):
    api = shop.api
    for length in (256, 300, 5000):
        too_long = Actor(None, shop.storefront.key + "x" * (length - len(shop.storefront.key)))
        send = post_purchase(shop, purchase(shop), actor=too_long)
        assert refused(api, send, 401)["code"] == "unauthorized"
        send = sender(api, "GET", f"/v1/fans/{shop.fan.id}", too_long)
        assert refused(api, send, 401)["code"] == "unauthorized"


# ids in the path and the query --------------------------------------------------------

WRONG_IDS = [
    "x" * 5000,
    "fän_ünïcødé",
    "☃",
    "..",
    "%2e%2e",
    "..%2F..%2Fv1%2Fartists",
    "%00",
    "fan_%00abc",
    "a b",
    "'; drop table fans; --",
    "fan_" + "0" * 20 + "%0a",
]


def test_path_ids_of_the_wrong_shape_are_404_problems(shop):
    for bad in WRONG_IDS:
        _every_id_in_the_path(shop, bad)


def _every_id_in_the_path(shop: Shop, bad: str) -> None:
    api = shop.api
    for method, path, actor in (
        ("GET", "/v1/fans/{}", api.admin),
        ("GET", "/v1/fans/{}/balance", api.admin),
        ("GET", "/v1/fans/{}/rewards", api.admin),
        ("GET", "/v1/content/{}", api.admin),
        ("GET", "/v1/content/{}/reward-plan", api.admin),
        ("GET", "/v1/artists/{}/reward-plan", api.admin),
        ("GET", "/v1/purchases/{}", api.admin),
        ("GET", "/v1/payouts/{}", api.admin),
        ("GET", "/v1/share-links/{}", api.admin),
        ("POST", "/v1/share-links/{}/disable", api.admin),
    ):
        send = sender(api, method, path.format(bad), actor)
        assert refused(api, send, 404)["code"] == "not_found", (method, path, bad[:20])
    refund = post_refund(shop, {"amount": 1}, purchase_id=bad)
    assert refused(api, refund, 404)["code"] == "not_found"
    plan = sender(api, "PUT", f"/v1/content/{bad}/reward-plan", api.admin, {"level_rates_bps": [1]})
    assert refused(api, plan, 404)["code"] == "not_found"
    # A browser following a mangled link gets a 404 (a page, or a problem if no route fits).
    refused(api, sender(api, "GET", f"/l/{bad}"), 404, problem=False)


def test_a_nul_in_the_query_string_is_422(shop):
    api = shop.api
    for query in ("cursor=%00", "cursor=abc%00def", "limit=1%00", "x%00=1", "fan_id=fan_%00"):
        for path, actor in (
            (f"/v1/fans/{shop.fan.id}/rewards", shop.fan),
            ("/v1/payouts", api.admin),
            ("/v1/content/" + shop.item["id"], shop.fan),
        ):
            send = sender(api, "GET", f"{path}?{query}", actor)
            assert refused(api, send, 422)["code"] == "invalid", (path, query)


# signed but unreadable webhook events --------------------------------------------------

WEBHOOK_SECRET = "whsec_hostile"


def test_a_signed_event_we_cannot_read_is_400_and_an_unknown_type_is_acknowledged(
    engine, db_url, session
):
    app = create_test_app(engine, db_url, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    api = ApiDriver(app.test_client(), session)

    def deliver(event: Any) -> Callable[[], TestResponse]:
        payload = json.dumps(event).encode()
        headers = {
            "Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        }
        return lambda: api.client.post("/v1/webhooks/stripe", data=payload, headers=headers)

    account = {"id": "acct_1", "payouts_enabled": True}
    for event in (
        {"id": "evt_1", "type": "account.updated", "data": {"object": {"payouts_enabled": "yes"}}},
        {"id": "evt_2", "type": "account.updated", "data": {"object": {"id": ["acct_1"]}}},
        {"id": "evt_3", "type": "transfer.reversed", "data": {"object": {"amount_reversed": 1}}},
        {
            "id": "evt_4",
            "type": "transfer.reversed",
            "data": {"object": {"id": "tr_1", "amount_reversed": "12"}},
        },
        {"id": "evt_5", "type": "account.updated", "data": []},
        {"id": "evt\x006", "type": "account.updated", "data": {"object": account}},
        {"id": "evt_7", "type": "t" * 101, "data": {"object": account}},
        {"id": "e" * 256, "type": "account.updated", "data": {"object": account}},
    ):
        assert refused(api, deliver(event), 400)["code"] == "webhook_event_invalid", event["id"]
    balance = {"id": "evt_8", "type": "balance.available", "data": {"object": {"available": []}}}
    assert api.call("POST", "/v1/webhooks/stripe").status_code == 400  # unsigned
    response = deliver(balance)()
    assert response.status_code == 200 and response.get_json()["result"] == "ignored"
