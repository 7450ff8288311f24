"""Rate limits: per address on sign-up, share-link creation and clicks; per API key on every
other authenticated endpoint; 429 problem+json with Retry-After; memory or Redis counters."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, row_counts, share

REDIS_URL = "redis://127.0.0.1:6379/0"
ADDR_A = {"REMOTE_ADDR": "198.51.100.7"}
ADDR_B = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def make_api(engine: Engine, db_url: str, session: Session) -> Any:
    """An ApiDriver over an app built with the given config overrides."""

    def make(**overrides: Any) -> ApiDriver:
        return ApiDriver(create_test_app(engine, db_url, **overrides).test_client(), session)

    return make


class RedisStore:
    """The real Redis at REDIS_URL, seen under a key prefix of this test's own."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"test-{uuid.uuid4().hex}"
        self.config = {"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": self.prefix}

    def stored_keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=f"*{self.prefix}*"))


@pytest.fixture
def redis_store() -> Any:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    store = RedisStore(client)
    yield store
    for key in store.stored_keys():
        client.delete(key)
    client.close()


def sign_up(api: ApiDriver, environ: dict[str, str]) -> TestResponse:
    handle = f"f{uuid.uuid4().hex[:12]}"
    return api.call("POST", "/v1/fans", json={"handle": handle}, environ_base=environ)


def fan_from(api: ApiDriver, environ: dict[str, str]) -> Actor:
    response = sign_up(api, environ)
    assert response.status_code == 201
    body = response.get_json()
    return Actor(body["id"], body["api_key"])


def assert_rate_limited(response: TestResponse, *, problem_json: bool = True) -> int:
    assert response.status_code == 429, (response.status_code, response.get_data(as_text=True))
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    if problem_json:
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["code"] == "rate_limited" and body["status"] == 429
        assert body["type"].endswith("/rate_limited")
    return retry_after


def test_sign_ups_over_the_limit_from_one_address_get_429_with_retry_after_another_address_does_not(
    make_api,
):
    api = make_api(RATELIMIT_SIGNUP="3/minute")
    for _ in range(3):
        assert sign_up(api, ADDR_A).status_code == 201
    before = row_counts(api.session)
    retry_after = assert_rate_limited(sign_up(api, ADDR_A))
    assert retry_after <= 60
    assert row_counts(api.session) == before  # the refused sign-up wrote nothing
    assert sign_up(api, ADDR_B).status_code == 201


def test_the_limit_is_checked_before_the_body_so_invalid_requests_count_too(make_api):
    api = make_api(RATELIMIT_SIGNUP="2/minute")
    for _ in range(2):
        bad = api.call("POST", "/v1/fans", json={"handle": ""}, environ_base=ADDR_A)
        assert bad.status_code == 422
    assert_rate_limited(sign_up(api, ADDR_A))


def test_a_sign_up_limit_recovers_after_its_window(make_api):
    api = make_api(RATELIMIT_SIGNUP="3 per 1 second")
    for _ in range(3):
        assert sign_up(api, ADDR_A).status_code == 201
    assert_rate_limited(sign_up(api, ADDR_A))
    time.sleep(1.1)
    assert sign_up(api, ADDR_A).status_code == 201


def test_the_per_key_limit_stops_key_a_on_every_authenticated_endpoint_but_not_key_b(make_api):
    api = make_api(RATELIMIT_API="3/minute")
    a, b = api.fan(), api.fan()
    for _ in range(3):
        api.ok("GET", f"/v1/fans/{a.id}", a)
    assert_rate_limited(api.call("GET", f"/v1/fans/{a.id}", a))
    # one budget per key, shared by all the endpoints it calls
    assert_rate_limited(api.call("GET", f"/v1/fans/{a.id}/balance", a))
    api.ok("GET", f"/v1/fans/{b.id}", b)
    api.ok("GET", f"/v1/fans/{b.id}/balance", b)
    # public routes and the per-address budgets are separate
    assert api.call("GET", "/healthz").status_code == 200
    assert api.call("GET", "/openapi.json").status_code == 200
    api.fan()


def test_requests_without_a_usable_key_are_limited_by_address(make_api):
    api = make_api(RATELIMIT_API="2/minute")
    for _ in range(2):
        assert api.call("GET", "/v1/payouts", environ_base=ADDR_A).status_code == 401
    assert_rate_limited(api.call("GET", "/v1/payouts", environ_base=ADDR_A))
    assert api.call("GET", "/v1/payouts", environ_base=ADDR_B).status_code == 401


def test_share_link_creation_is_limited_per_address(make_api):
    api = make_api(RATELIMIT_LINKS="2/minute")
    content = api.content(api.artist())
    fan, other = api.fan(), api.fan()
    body = {"content_id": content["id"]}
    for _ in range(2):
        api.ok("POST", "/v1/share-links", fan, body, 201, environ_base=ADDR_A)
    assert_rate_limited(api.call("POST", "/v1/share-links", fan, body, environ_base=ADDR_A))
    assert_rate_limited(api.call("POST", "/v1/share-links", other, body, environ_base=ADDR_A))
    api.ok("POST", "/v1/share-links", other, body, 201, environ_base=ADDR_B)


def test_clicks_are_limited_per_address_with_a_page_and_retry_after(make_api):
    api = make_api(RATELIMIT_CLICKS="2/minute")
    fan = api.fan()
    code = share(api, fan, api.content(api.artist())["id"])
    for _ in range(2):
        assert api.call("GET", f"/l/{code}", environ_base=ADDR_A).status_code == 302
    refused = api.call("GET", f"/l/{code}", environ_base=ADDR_A)
    assert_rate_limited(refused, problem_json=False)
    assert refused.mimetype == "text/html" and "Location" not in refused.headers
    assert api.call("GET", f"/l/{code}", environ_base=ADDR_B).status_code == 302
    stats = api.ok("GET", f"/v1/share-links/{code}", fan)
    assert stats["clicks"] == 3  # the refused click was not recorded


def test_clicks_spend_their_budget_in_redis_and_when_it_is_down_in_memory(make_api, redis_store):
    # Clicks spend their budget directly (api.limits.spend), not through Flask-Limiter:
    # the same store, shared by every app on it, and the same fallback.
    config = {"RATELIMIT_CLICKS": "2/minute", **redis_store.config}
    api = make_api(**config)
    code = share(api, api.fan(), api.content(api.artist())["id"])
    for _ in range(2):
        assert api.call("GET", f"/l/{code}", environ_base=ADDR_A).status_code == 302
    assert any(b"clicks" in key for key in redis_store.stored_keys())
    other = make_api(**config)
    assert_rate_limited(other.call("GET", f"/l/{code}", environ_base=ADDR_A), problem_json=False)
    dead = make_api(RATELIMIT_CLICKS="2/minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    for _ in range(2):
        assert dead.call("GET", f"/l/{code}", environ_base=ADDR_B).status_code == 302
    assert_rate_limited(dead.call("GET", f"/l/{code}", environ_base=ADDR_B), problem_json=False)


def test_the_memory_store_starts_no_thread_per_request_and_still_expires(make_api):
    import threading

    api = make_api(RATELIMIT_CLICKS="3 per 1 second")
    code = share(api, api.fan(), api.content(api.artist())["id"])
    threads = threading.active_count()
    for _ in range(3):
        assert api.call("GET", f"/l/{code}", environ_base=ADDR_A).status_code == 302
    assert_rate_limited(api.call("GET", f"/l/{code}", environ_base=ADDR_A), problem_json=False)
    for i in range(50):  # other addresses: counted, each under its own key
        addr = {"REMOTE_ADDR": f"192.0.2.{i}"}
        assert api.call("GET", f"/l/{code}", environ_base=addr).status_code == 302
    assert threading.active_count() <= threads
    time.sleep(1.1)  # the window passed: counted afresh
    assert api.call("GET", f"/l/{code}", environ_base=ADDR_A).status_code == 302


def test_limits_are_counted_in_redis_and_shared_by_every_app_using_it(make_api, redis_store):
    config = {"RATELIMIT_API": "3/minute", "RATELIMIT_SIGNUP": "2/minute", **redis_store.config}
    api = make_api(**config)
    a, b = fan_from(api, ADDR_A), fan_from(api, ADDR_A)
    assert_rate_limited(sign_up(api, ADDR_A))
    for _ in range(3):
        api.ok("GET", f"/v1/fans/{a.id}", a)
    assert_rate_limited(api.call("GET", f"/v1/fans/{a.id}", a))
    api.ok("GET", f"/v1/fans/{b.id}", b)
    # a second app (another worker) on the same Redis sees the same counters
    assert redis_store.stored_keys(), "the counters should be in Redis"
    other = make_api(**config)
    assert_rate_limited(other.call("GET", f"/v1/fans/{a.id}", a))
    assert_rate_limited(sign_up(other, ADDR_A))
    other.ok("GET", f"/v1/fans/{b.id}", b)


def test_a_redis_limit_recovers_after_its_window(make_api, redis_store):
    api = make_api(RATELIMIT_SIGNUP="3 per 1 second", **redis_store.config)
    for _ in range(3):
        assert sign_up(api, ADDR_A).status_code == 201
    assert_rate_limited(sign_up(api, ADDR_A))
    time.sleep(1.1)
    assert sign_up(api, ADDR_A).status_code == 201


def test_an_unreachable_store_falls_back_to_counting_in_memory(make_api):
    api = make_api(RATELIMIT_SIGNUP="2/minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    for _ in range(2):
        assert sign_up(api, ADDR_A).status_code == 201
    assert_rate_limited(sign_up(api, ADDR_A))


def test_limits_can_be_switched_off(make_api):
    api = make_api(RATELIMIT_ENABLED=False, RATELIMIT_SIGNUP="1/minute")
    for _ in range(3):
        assert sign_up(api, ADDR_A).status_code == 201


def test_a_malformed_limit_stops_the_app_from_starting(engine, db_url):
    with pytest.raises(ValueError, match="RATELIMIT_CLICKS"):
        create_test_app(engine, db_url, RATELIMIT_CLICKS="lots")


def test_tests_keep_limits_on_with_generous_defaults(app: Flask):
    assert app.config["RATELIMIT_ENABLED"] is True
    assert "royalties.limiter" in app.extensions
    assert app.config["RATELIMIT_SIGNUP"] == "2000/minute"


def test_the_openapi_document_shows_429_where_limits_apply(make_api):
    api = make_api(RATELIMIT_SIGNUP="7/minute")
    paths = api.call("GET", "/openapi.json").get_json()["paths"]
    signup = paths["/v1/fans"]["post"]["responses"]["429"]
    assert "7/minute" in signup["description"] and "Retry-After" in signup["headers"]
    assert "application/problem+json" in signup["content"]
    assert "text/html" in paths["/l/{code}"]["get"]["responses"]["429"]["content"]
    for path, method in [("/v1/purchases", "post"), ("/v1/keys/rotate", "post")]:
        assert "429" in paths[path][method]["responses"]
    assert "429" not in paths["/v1/webhooks/stripe"]["post"]["responses"]


def test_storefront_sales_have_their_own_per_key_budget(make_api):
    from tests.helpers import buy

    api = make_api(RATELIMIT_API="2/minute", RATELIMIT_SALES="3/minute")
    artist, shop = api.artist(), api.storefront()
    item = api.content(artist)
    for i in range(3):  # more than the general budget: sales do not spend it
        buy(api, shop, item, {"external_id": f"c{i}"})
    assert_rate_limited(
        api.call(
            "POST",
            "/v1/purchases",
            shop,
            {
                "content_id": item["id"],
                "amount": 100,
                "currency": "USD",
                "buyer": {"external_id": "x"},
            },
            headers={"Idempotency-Key": "over"},
        )
    )
    # the same key still has its general budget for other calls
    assert api.call("GET", f"/v1/content/{item['id']}", shop).status_code == 200


def test_behind_trusted_proxies_each_client_address_has_its_own_budget(make_api):
    """TRUSTED_PROXIES=1: the address the proxy appended to X-Forwarded-For is the
    client's. Without it every client behind the proxy shares the proxy's budget."""
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def via_proxy(api: ApiDriver, client: str) -> TestResponse:
        handle = f"f{uuid.uuid4().hex[:12]}"
        return api.call(
            "POST",
            "/v1/fans",
            json={"handle": handle},
            environ_base=proxy,
            headers={"X-Forwarded-For": f"192.0.2.77, {client}"},
        )

    direct = make_api(RATELIMIT_SIGNUP="2/minute")
    assert [via_proxy(direct, c).status_code for c in ("198.51.100.1", "198.51.100.2")] == [201] * 2
    assert_rate_limited(via_proxy(direct, "198.51.100.3"))  # all three were "the proxy"

    behind = make_api(RATELIMIT_SIGNUP="2/minute", TRUSTED_PROXIES=1)
    for _ in range(2):
        assert via_proxy(behind, "198.51.100.1").status_code == 201
    assert_rate_limited(via_proxy(behind, "198.51.100.1"))
    assert via_proxy(behind, "198.51.100.2").status_code == 201  # spoofed first hop ignored


def test_an_impossible_number_of_trusted_proxies_stops_the_app_from_starting(engine, db_url):
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        create_test_app(engine, db_url, TRUSTED_PROXIES=9)
