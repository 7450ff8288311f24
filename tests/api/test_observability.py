"""Request ids, the log formats, /metrics and the health checks, through the app.

The multi-worker sums of /metrics and METRICS_BIND are checked against a real
``royalties serve`` (tests/api/test_serve_instances.py)."""

from __future__ import annotations

import io
import json
import logging
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api import logs
from royalties import rewards
from royalties.models import Reward
from tests.conftest import create_test_app
from tests.helpers import buy, refund, share


def metric(api, name: str, **labels: str) -> float:
    """The sample ``name`` with ``labels`` in /metrics (0 when absent)."""
    answer = api.call("GET", "/metrics", api.admin)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return 0.0


def test_a_well_formed_request_id_is_kept_and_any_other_replaced(api):
    kept = api.call("GET", "/healthz", headers={"X-Request-Id": "lb-1.2_x"})
    assert kept.headers["X-Request-Id"] == "lb-1.2_x"
    for bad in ("", "x" * 129, "a b", "é", "id\\n"):
        made = api.call("GET", "/healthz", headers={"X-Request-Id": bad})
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-Id"]), bad
    first, second = api.call("GET", "/healthz"), api.call("GET", "/healthz")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_every_problem_carries_the_request_id_of_its_answer(api):
    for answer in (
        api.call("GET", "/v1/fans/fan_nope", None),  # 401
        api.call("GET", "/v1/nothing-here"),  # 404
        api.call("DELETE", "/v1/artists", api.admin),  # 405
        api.call("POST", "/v1/artists", api.admin, {"name": ""}),  # 422
        api.call("POST", "/v1/artists", api.admin, headers={"X-Request-Id": "mine"}),
    ):
        assert answer.mimetype == "application/problem+json"
        assert answer.get_json()["request_id"] == answer.headers["X-Request-Id"]
    assert answer.get_json()["request_id"] == "mine"


def test_every_line_of_a_request_carries_its_id_and_the_request_line_its_caller(
    api, caplog, engine, db_url
):
    app = create_test_app(engine, db_url)

    @app.get("/_test/chatty")
    def chatty() -> str:
        logging.getLogger("royalties.test").warning("something about ann@example.com")
        return "ok"

    stream = io.StringIO()
    handler = logs.install(logging.StreamHandler(stream), "json")
    logging.getLogger().addHandler(handler)
    try:
        caplog.set_level(logging.INFO)
        app.test_client().get("/_test/chatty", headers={"X-Request-Id": "follow-me"})
        fan = api.fan()
        api.call("GET", f"/v1/fans/{fan.id}", fan, headers={"X-Request-Id": "as-a-fan"})
        api.call("GET", "/dashboard/login/email/sometoken123", headers={"X-Request-Id": "tok"})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == "follow-me"]
    assert [line["logger"] for line in mine] == ["royalties.test", "royalties.request"]
    assert mine[0]["message"] == "something about [email]"
    assert {"method": "GET", "path": "/_test/chatty", "status": 200}.items() <= mine[1].items()
    assert isinstance(mine[1]["duration_ms"], float)
    [as_fan] = [line for line in lines if line["request_id"] == "as-a-fan"]
    assert (as_fan["role"], as_fan["principal_id"]) == ("fan", fan.id)
    [token] = [line for line in lines if line["request_id"] == "tok"]
    assert token["path"] == "/dashboard/login/email/[redacted]"
    assert "sometoken123" not in stream.getvalue()
    assert {line["request_id"] for line in lines if line["logger"] == "royalties.request"} >= {
        "follow-me",
        "as-a-fan",
    }


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_both_formats_mask_messages_and_tracebacks_alike(fmt, caplog):
    stream = io.StringIO()
    logger = logging.getLogger("royalties.test.formats")
    handler = logs.install(logging.StreamHandler(stream), fmt)
    logger.addHandler(handler)
    caplog.set_level(logging.INFO)
    try:
        token = logs.REQUEST_ID.set("r-1")
        detail = "\n".join(["Key (email)=(bob@example.com) exists", "sk_live_abc", "whsec_x"])
        try:
            raise ValueError(detail)  # the traceback shows this line, not the values
        except ValueError:
            logger.exception("failed for %s with %s", "rk_" + "a" * 32, "f" * 64)
        finally:
            logs.REQUEST_ID.reset(token)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    if fmt == "text":
        assert " ERROR royalties.test.formats [r-1] failed for [secret] with [hash]" in out
    else:
        [line] = [json.loads(text) for text in out.splitlines()]
        assert line["message"] == "failed for [secret] with [hash]"
        assert line["request_id"] == "r-1"
        out = line["exception"]
    assert "Key (email)=([redacted])" in out and "Traceback" in out
    for secret in ("bob@", "sk_live", "whsec_x", "a" * 32, "f" * 64):
        assert secret not in out, secret
    # The record itself is untouched, for any other handler (here pytest's).
    assert "rk_" + "a" * 32 in caplog.records[-1].getMessage()


def test_redaction_masks_emails_keys_secrets_and_digests_and_keeps_the_rest():
    cases = {
        "to ann.b+x@mail.example.org now": "to [email] now",
        "Bearer rk_abc123def": "Bearer [secret]",
        "key=sk_test_51Hx whsec_Zz pk_live_1": "key=[secret] [secret] [secret]",
        "sha " + "0a" * 32 + ".": "sha [hash].",
        "id pur_0123456789abcdef0123 and 12.5ms": "id pur_0123456789abcdef0123 and 12.5ms",
        "task_rk_1": "task_rk_1",  # not a key's start
        "DETAIL:  Key (key, client_id)=(order-1, sto_1) already exists.": (
            "DETAIL:  Key (key, client_id)=([redacted]) already exists."
        ),
    }
    for raw, shown in cases.items():
        assert logs.redact(raw) == shown, raw


def test_metrics_answer_an_admin_key_only(api):
    fan = api.fan()
    assert api.call("GET", "/metrics").status_code == 401
    assert api.call("GET", "/metrics", fan).status_code == 403
    answer = api.call("GET", "/metrics", api.admin)
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    assert "royalties_http_requests_total" in answer.get_data(as_text=True)


def test_metrics_on_a_metrics_bind_are_not_served_on_the_main_listener(engine, db_url):
    app = create_test_app(engine, db_url, METRICS_BIND="127.0.0.1:1")
    # The test client has no socket: it is the main listener, where /metrics is not.
    client = app.test_client()
    answer = client.get("/metrics")
    assert answer.status_code == 404 and answer.mimetype == "application/problem+json"
    assert client.get("/healthz").status_code == 200


def test_requests_are_counted_by_route_and_status_with_their_latency(api):
    fan = api.fan()
    route = "/v1/fans/<fan_id>"
    before = metric(api, "royalties_http_requests_total", route=route, status="200")
    slow_before = metric(api, "royalties_http_request_duration_seconds_count", route=route)
    for _ in range(3):
        api.ok("GET", f"/v1/fans/{fan.id}", fan)
    api.call("GET", "/v1/no/such/path")
    after = metric(api, "royalties_http_requests_total", route=route, status="200")
    assert after - before == 3
    count = metric(api, "royalties_http_request_duration_seconds_count", route=route)
    assert count - slow_before == 3
    assert metric(api, "royalties_http_requests_total", route="<unmatched>", status="404") >= 1
    page = api.call("GET", "/metrics", api.admin).get_data(as_text=True)
    assert fan.id not in page  # ids never become labels


def test_purchases_refunds_and_rewards_by_state_are_counted_and_replays_are_not(api, session):
    artist, storefront = api.artist(), api.storefront()
    item = api.content(artist, price=2000, currency="EUR")
    fan = api.fan()
    code = share(api, fan, item["id"])
    bought = metric(api, "royalties_purchases_total", currency="EUR")
    amount = metric(api, "royalties_purchases_amount_minor_total", currency="EUR")
    refunds = metric(api, "royalties_refunds_total", currency="EUR")
    sale = buy(api, storefront, item, {"email": "m@x.io"}, share_code=code, key="same")
    buy(api, storefront, item, {"email": "m@x.io"}, share_code=code, key="same")  # replay
    refund(api, storefront, sale["id"], 500)
    assert metric(api, "royalties_purchases_total", currency="EUR") - bought == 1
    assert metric(api, "royalties_purchases_amount_minor_total", currency="EUR") - amount == 2000
    assert metric(api, "royalties_refunds_total", currency="EUR") - refunds == 1
    # The gauges read the database: the same as each reward's shown state in Python.
    states = [rewards.shown_state(r) for r in session.query(Reward).all()]
    session.rollback()
    assert states
    for state in rewards.SHOWN_STATES:
        assert metric(api, "royalties_rewards", state=state) == states.count(state), state
    assert metric(api, "royalties_payouts", state="paid") == 0
    assert metric(api, "royalties_events_not_fanned_out") > 0  # the sale's own events


def refusals(client: Any, admin: str, budget: str) -> float:
    """``royalties_rate_limited_total`` of ``budget``, as /metrics shows it."""
    page = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    for family in text_string_to_metric_families(page.get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == "royalties_rate_limited_total" and sample.labels == {
                "budget": budget
            }:
                return float(sample.value)
    return 0.0


def test_rate_limit_refusals_are_counted_by_budget(engine, db_url, session):
    from royalties.services.accounts import create_admin_key

    admin = create_admin_key(session)
    session.close()
    app = create_test_app(engine, db_url, RATELIMIT_SIGNUP="1/minute")
    client = app.test_client()

    before = refusals(client, admin, "RATELIMIT_SIGNUP")
    statuses = [client.post("/v1/fans", json={"handle": f"h{i}"}).status_code for i in range(3)]
    assert statuses == [201, 429, 429]
    assert refusals(client, admin, "RATELIMIT_SIGNUP") - before == 2


def test_refused_clicks_are_counted_too(api, engine, db_url, session):
    # Clicks spend their budget in the view (api.limits.spend), not in Flask-Limiter.
    from royalties.services.accounts import create_admin_key

    fan, item = api.fan(), api.content(api.artist())
    code = api.ok("POST", "/v1/share-links", fan, {"content_id": item["id"]}, 201)["code"]
    admin = create_admin_key(session)
    session.close()
    client = create_test_app(engine, db_url, RATELIMIT_CLICKS="1/minute").test_client()

    before = refusals(client, admin, "RATELIMIT_CLICKS")
    assert [client.get(f"/l/{code}").status_code for _ in range(3)] == [302, 429, 429]
    assert refusals(client, admin, "RATELIMIT_CLICKS") - before == 2


def test_healthz_answers_without_the_database_and_readyz_checks_it(api, engine, db_url):
    assert api.call("GET", "/healthz").get_data(as_text=True) == "ok\n"
    ready = api.call("GET", "/readyz")
    assert ready.status_code == 200 and ready.get_data(as_text=True) == "ready\n"
    with engine.begin() as conn:  # the schema one migration behind
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    behind = api.call("GET", "/readyz")
    assert behind.status_code == 503 and behind.mimetype == "application/problem+json"
    assert "royalties db upgrade" in behind.get_json()["detail"]
    gone = create_test_app(engine, db_url, ENGINE=None, DATABASE_URL="sqlite:////nonexistent/x.db")
    down = gone.test_client().get("/readyz")
    assert down.status_code == 503 and down.get_json()["detail"] == "the database does not answer"
    assert gone.test_client().get("/healthz").status_code == 200
