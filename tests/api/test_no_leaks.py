"""Secrets stay secret, and every answer carries the security headers it should.

A live server (werkzeug, with its access log) runs the app with a Stripe key, a webhook
secret and a session secret of its own. The test creates keys of every role, rotates
one, then provokes every kind of error (401, 403, 404, 405, 400, 413, 415, 422, Stripe
refusing a call and echoing our key back, a bad webhook signature, a failed dashboard
sign-in, and a 500 from a test-only route) while capturing every log record at DEBUG.
No key, old or new, and no secret may appear in any log line or in any answer other
than the one that issued that key; nor in the OpenAPI document, which shows no example
keys at all.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from flask import request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from api.dev.fake_stripe import FakeStripe, make_event, sign_payload
from api.headers import CONTENT_SECURITY_POLICY
from royalties.services.accounts import create_admin_key
from tests.api.live import live_server
from tests.conftest import create_test_app

KEY_SHAPE = re.compile(r"rk_[0-9a-z]{8,}")


@dataclass
class Server:
    base: str
    fake: FakeStripe
    secrets: dict[str, str]  # what must never leak: name -> value
    keys: dict[str, str] = field(default_factory=dict)  # every API key made, by name
    answers: list[requests.Response] = field(default_factory=list)  # all but key issuance

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        response = requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)
        self.answers.append(response)
        return response

    def issue(self, name: str, method: str, path: str, key: str | None, body: Any) -> Any:
        """A call whose answer holds a new key: kept, and not checked for keys."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = requests.request(
            method, self.base + path, json=body, headers=headers, timeout=10
        )
        assert response.status_code == 201, response.text
        created = response.json()
        self.keys[name] = created["api_key"]
        return created


@pytest.fixture
def server(engine: Engine, db_url: str, session: Session) -> Iterator[Server]:
    hidden = {
        "stripe key": "sk_test_" + secrets.token_hex(16),
        "webhook secret": "whsec_" + secrets.token_hex(16),
        "session secret": secrets.token_hex(32),
        "click salt": secrets.token_hex(16),
    }
    with FakeStripe(hang_seconds=2) as fake:
        app = create_test_app(
            engine,
            db_url,
            STRIPE_API_KEY=hidden["stripe key"],
            STRIPE_API_BASE=fake.url,
            STRIPE_WEBHOOK_SECRET=hidden["webhook secret"],
            SECRET_KEY=hidden["session secret"],
            CLICK_HASH_SALT=hidden["click salt"],
        )

        @app.post("/v1/_test/boom")
        def boom() -> None:
            """A bug: fails while handling a request that carries a key and a body."""
            request.get_json()
            raise RuntimeError("boom")

        admin = create_admin_key(session)
        session.close()
        with live_server(app) as base:
            srv = Server(base, fake, hidden)
            srv.keys["admin"] = admin
            yield srv


def provoke_everything(srv: Server) -> None:
    """Keys of every role in use, and every kind of error, through the live server."""
    admin = srv.keys["admin"]
    srv.issue("artist", "POST", "/v1/artists", admin, {"name": "Ada"})
    srv.issue(
        "storefront", "POST", "/v1/storefronts", admin, {"name": "S", "base_url": "https://s.io"}
    )
    fan = srv.issue("fan", "POST", "/v1/fans", None, {"handle": "ann", "email": "ann@x.io"})
    srv.issue("other fan", "POST", "/v1/fans", None, {"handle": "bob"})
    srv.issue("rotated fan", "POST", "/v1/keys/rotate", srv.keys["other fan"], None)
    srv.keys["never issued"] = "rk_" + secrets.token_hex(16)
    k = srv.keys

    item = srv.call(
        "POST",
        "/v1/content",
        k["artist"],
        json={
            "title": "Song",
            "kind": "track",
            "price": 1000,
            "currency": "USD",
            "storefront_url": "https://s.io/song",
        },
    ).json()
    code = srv.call("POST", "/v1/share-links", k["fan"], json={"content_id": item["id"]}).json()[
        "code"
    ]
    sale = {
        "content_id": item["id"],
        "amount": 1000,
        "currency": "USD",
        "buyer": {"email": "b@x.io"},
        "share_code": code,
    }
    idem = {"Idempotency-Key": "order-1"}
    assert srv.call("POST", "/v1/purchases", k["storefront"], json=sale, headers=idem).ok
    for key in (k["fan"], admin):
        assert srv.call("GET", f"/v1/fans/{fan['id']}/balance", key).ok
        assert srv.call("GET", f"/v1/fans/{fan['id']}/rewards", key).ok
        assert srv.call("GET", f"/v1/fans/{fan['id']}", key).ok
    assert srv.call("GET", "/v1/keys", admin).ok
    assert srv.call("GET", f"/l/{code}", allow_redirects=False).status_code == 302

    expected = [
        (401, "GET", f"/v1/fans/{fan['id']}", k["never issued"], {}),
        (401, "GET", f"/v1/fans/{fan['id']}", k["other fan"], {}),  # rotated away
        (401, "POST", "/v1/artists", k["never issued"] + "x" * 300, {"json": {"name": "X"}}),
        (403, "POST", "/v1/artists", k["fan"], {"json": {"name": "X"}}),
        (403, "GET", f"/v1/fans/{fan['id']}", k["rotated fan"], {}),
        (404, "GET", "/v1/purchases/pur_00000000000000000000", k["storefront"], {}),
        (405, "DELETE", "/v1/artists", admin, {}),
        (400, "POST", "/v1/artists", admin, {"data": "{nope", "headers": _json_type()}),
        (413, "POST", "/v1/artists", admin, {"json": {"name": "x" * 70_000}}),
        (415, "POST", "/v1/artists", admin, {"data": f"name={admin}"}),
        (422, "POST", "/v1/artists", admin, {"json": {"name": "", "api_key": admin}}),
        (400, "POST", "/v1/purchases", k["storefront"], {"json": sale}),  # no Idempotency-Key
        (500, "POST", "/v1/_test/boom", admin, {"json": {"api_key": admin, "token": k["fan"]}}),
    ]
    for status, method, path, key, kwargs in expected:
        response = srv.call(method, path, key, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"

    # Stripe refuses our key and echoes it back; then it fails outright.
    stripe_key = srv.secrets["stripe key"]
    srv.fake.fail_next("accounts", 401, message=f"Invalid API Key provided: {stripe_key}")
    refused = srv.call("POST", f"/v1/fans/{fan['id']}/payout-account", k["fan"])
    assert refused.status_code >= 500, refused.text
    srv.fake.fail_next("accounts", 500, message=f"internal error for key {stripe_key}")
    failed = srv.call("POST", f"/v1/fans/{fan['id']}/payout-account", k["fan"])
    assert failed.status_code >= 500, failed.text
    assert srv.call("POST", f"/v1/fans/{fan['id']}/payout-account", k["fan"]).ok
    assert srv.call("POST", "/v1/payout-runs", admin).status_code == 201

    # Webhooks: a forged signature, then a good one.
    event = make_event("account.updated", {"id": "acct_unknown", "payouts_enabled": True})
    for signature in (sign_payload(event, "whsec_forged"), "t=1,v1=00"):
        forged = srv.call(
            "POST",
            "/v1/webhooks/stripe",
            data=event,
            headers={"Stripe-Signature": signature, **_json_type()},
        )
        assert forged.status_code == 400
    good = sign_payload(event, srv.secrets["webhook secret"])
    assert srv.call(
        "POST",
        "/v1/webhooks/stripe",
        data=event,
        headers={"Stripe-Signature": good, **_json_type()},
    ).ok

    # The dashboard: a failed sign-in with a made-up key, then a real one.
    browser = requests.Session()
    page = browser.get(f"{srv.base}/dashboard/login", timeout=10)
    srv.answers.append(page)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    for key, status in ((k["never issued"], 401), (k["fan"], 302)):
        form = {"csrf_token": token.group(1), "api_key": key}
        signed_in = browser.post(
            f"{srv.base}/dashboard/login", data=form, allow_redirects=False, timeout=10
        )
        srv.answers.append(signed_in)
        assert signed_in.status_code == status, signed_in.text


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_keys_and_secrets_never_appear_in_logs_errors_or_answers(server, caplog):
    caplog.set_level(logging.DEBUG)
    provoke_everything(server)

    hidden = dict(server.secrets)
    for name, key in server.keys.items():
        hidden[name] = key
        hidden[f"{name} (past its public prefix)"] = key[10:]
    logged = caplog.text + "".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    assert "boom" in logged  # the 500 was logged, with its traceback...
    assert "Traceback" in logged
    assert "werkzeug" in {record.name for record in caplog.records}  # ...and the access log
    for name, value in hidden.items():
        assert value not in logged, f"the {name} is in the logs"
        for response in server.answers:
            where = f"{response.request.method} {response.request.path_url}"
            assert value not in response.text, f"the {name} is in the answer to {where}"
            assert value not in str(response.headers), f"the {name} is in the headers of {where}"
    # The bug's answer names nothing internal either.
    crash = next(r for r in server.answers if r.status_code == 500)
    assert "boom" not in crash.text and "RuntimeError" not in crash.text


def test_the_openapi_document_shows_no_keys_or_secrets(client):
    doc = client.get("/openapi.json").get_data(as_text=True)
    page = client.get("/docs").get_data(as_text=True)
    for text in (doc, page):
        assert not KEY_SHAPE.search(text)
        assert "sk_test" not in text and "sk_live" not in text and "whsec_" not in text
    examples = [value for key, value in _walk(json.loads(doc)) if key in ("example", "examples")]
    for example in examples:
        assert not KEY_SHAPE.search(json.dumps(example)), example


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _answers_of_every_kind(api: Any) -> dict[str, Any]:
    fan = api.fan()
    artist = api.artist()
    item = api.content(artist)
    code = api.ok("POST", "/v1/share-links", fan, {"content_id": item["id"]}, 201)["code"]
    return {
        "created with a key": api.call("POST", "/v1/fans", None, {"handle": "carol"}),
        "balance": api.call("GET", f"/v1/fans/{fan.id}/balance", fan),
        "payouts": api.call("GET", "/v1/payouts", fan),
        "problem": api.call("GET", f"/v1/fans/{fan.id}", None),
        "method problem": api.call("DELETE", "/v1/fans"),
        "redirect": api.call("GET", f"/l/{code}"),
        "dead link page": api.call("GET", "/l/0000000000"),
        "docs page": api.call("GET", "/docs"),
        "openapi": api.call("GET", "/openapi.json"),
        "health": api.call("GET", "/healthz"),
        "dashboard page": api.call("GET", "/dashboard/login"),
    }


def test_every_answer_carries_the_security_headers(api):
    for name, response in _answers_of_every_kind(api).items():
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] in ("no-referrer", "same-origin"), name
        framing = headers.get("X-Frame-Options") == "DENY" or "frame-ancestors 'none'" in (
            headers.get("Content-Security-Policy") or ""
        )
        assert framing, name


def test_api_answers_are_never_cached(api):
    for name, response in _answers_of_every_kind(api).items():
        if response.request.path.startswith("/v1/") or name == "redirect":
            assert "no-store" in response.headers.get("Cache-Control", ""), name


def test_html_pages_allow_only_same_origin_scripts_and_styles(api):
    answers = _answers_of_every_kind(api)
    for name, response in answers.items():
        policy = response.headers.get("Content-Security-Policy")
        if response.mimetype == "text/html" and name != "redirect":
            assert policy is not None, name
            directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
            assert directives["script-src"] == "'self'", name
            assert directives["style-src"] == "'self'", name
            assert directives["frame-ancestors"] == "'none'", name
        elif response.mimetype != "text/html":
            assert policy is None, name
    assert answers["docs page"].headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    # The docs page keeps to its own policy: its styles come from a file, not inline.
    html = answers["docs page"].get_data(as_text=True)
    assert "<style" not in html and "style=" not in html and "<script" not in html
    sheet = api.call("GET", "/static/docs.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"


def test_a_real_server_logs_no_email_key_hash_idempotency_key_or_secret(db_url, session, tmp_path):
    """Sales, a replay, a refund, a paid payout, refused requests, a 429 and a 500 (the
    database refusing the purchase's INSERT) through ``royalties serve`` at DEBUG, in
    JSON: every line of its output is searched for each known value."""
    from sqlalchemy import text

    from royalties.keys import hash_key
    from tests.api.live import serve_process

    hidden = {
        "stripe key": "sk_test_" + secrets.token_hex(16),
        "webhook secret": "whsec_" + secrets.token_hex(16),
        "session secret": secrets.token_hex(32),
        "click salt": secrets.token_hex(16),
    }
    admin = create_admin_key(session)
    session.close()
    keys = {"admin": admin}
    with FakeStripe(hang_seconds=2) as fake:
        env = {
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "STRIPE_API_KEY": hidden["stripe key"],
            "STRIPE_API_BASE": fake.url,
            "STRIPE_WEBHOOK_SECRET": hidden["webhook secret"],
            "SECRET_KEY": hidden["session secret"],
            "CLICK_HASH_SALT": hidden["click salt"],
            "MIN_PAYOUT": "1000",
            "RATELIMIT_LOGIN": "2/minute",
        }
        with serve_process(db_url, env=env, log=tmp_path / "serve.log") as served:
            base = f"http://127.0.0.1:{served.port}"

            def call(method: str, path: str, key: str | None = None, **kw: Any) -> Any:
                headers = kw.pop("headers", {})
                if key:
                    headers["Authorization"] = f"Bearer {key}"
                return requests.request(method, base + path, headers=headers, timeout=20, **kw)

            def made(name: str, path: str, key: str | None, body: Any) -> dict[str, Any]:
                answer = call("POST", path, key, json=body)
                assert answer.status_code == 201, answer.text
                keys[name] = answer.json()["api_key"]
                return answer.json()  # type: ignore[no-any-return]

            artist = made("artist", "/v1/artists", admin, {"name": "Ada"})
            made("storefront", "/v1/storefronts", admin, {"name": "S", "base_url": "https://s.io"})
            emails = {f"{who} email": f"{who}-{secrets.token_hex(4)}@leak.example" for who in "abc"}
            hidden.update(emails)
            fan = made("fan", "/v1/fans", None, {"handle": "ann", "email": emails["a email"]})
            plan = {"level_rates_bps": [5000], "hold_days": 0}
            path = f"/v1/artists/{artist['id']}/reward-plan"
            assert call("PUT", path, keys["artist"], json=plan).ok
            item = {"title": "S", "kind": "track", "price": 3000, "currency": "USD"}
            item = call(
                "POST",
                "/v1/content",
                keys["artist"],
                json={**item, "storefront_url": "https://s.io/1"},
            ).json()
            link = call("POST", "/v1/share-links", keys["fan"], json={"content_id": item["id"]})
            sale = {
                "content_id": item["id"],
                "amount": 3000,
                "currency": "USD",
                "buyer": {"email": emails["b email"]},
                "share_code": link.json()["code"],
            }
            idem = {
                name: f"idem-{name}-{secrets.token_hex(6)}" for name in ("sale", "refund", "bug")
            }
            hidden.update({f"idempotency key of the {k}": v for k, v in idem.items()})
            for _ in range(2):  # the second is a replay
                bought = call(
                    "POST",
                    "/v1/purchases",
                    keys["storefront"],
                    json=sale,
                    headers={"Idempotency-Key": idem["sale"]},
                )
                assert bought.status_code == 201, bought.text
            refunded = call(
                "POST",
                f"/v1/purchases/{bought.json()['id']}/refunds",
                keys["storefront"],
                json={"amount": 1000},
                headers={"Idempotency-Key": idem["refund"]},
            )
            assert refunded.status_code == 201, refunded.text

            account = call("POST", f"/v1/fans/{fan['id']}/payout-account", keys["fan"]).json()
            fake.set_payouts_enabled(account["account_id"], True)
            event = make_event("account.updated", fake.accounts[account["account_id"]])
            signature = sign_payload(event, hidden["webhook secret"])
            hook = call(
                "POST",
                "/v1/webhooks/stripe",
                data=event,
                headers={"Stripe-Signature": signature, **_json_type()},
            )
            assert hook.ok, hook.text
            run = call("POST", "/v1/payout-runs", admin)
            assert [p["state"] for p in run.json()["payouts"]] == ["paid"], run.text

            token = "t" * 32  # shaped like a sign-in link's token
            hidden["sign-in token in a path"] = token
            refused = [
                call("GET", f"/v1/fans/{fan['id']}", "rk_" + secrets.token_hex(16)),
                call("GET", f"/v1/fans/{fan['id']}", keys["storefront"]),
                call("POST", "/v1/purchases", keys["storefront"], json=sale),  # no key
                call("POST", "/v1/artists", admin, json={"name": "", "email": emails["c email"]}),
                call("GET", f"/dashboard/login/email/{token}"),
                *(call("POST", "/dashboard/login", data={"api_key": admin}) for _ in range(3)),
            ]
            assert [r.status_code for r in refused][:4] == [401, 403, 400, 422]
            assert refused[-1].status_code == 429

            # Bugs: statements whose parameters are an idempotency key, then an email.
            for n, (table, column) in enumerate(
                [("idempotency_records", "request_hash"), ("fans", "email")]
            ):
                rename = f"ALTER TABLE {table} RENAME COLUMN {{}} TO {{}}"
                with session.bind.begin() as conn:  # type: ignore[union-attr]
                    conn.execute(text(rename.format(column, "gone")))
                crash = call(
                    "POST",
                    "/v1/purchases",
                    keys["storefront"],
                    json={**sale, "buyer": {"email": emails["c email"]}},
                    headers={"Idempotency-Key": idem["bug"], "X-Request-Id": f"bug-{n}"},
                )
                with session.bind.begin() as conn:  # type: ignore[union-attr]
                    conn.execute(text(rename.format("gone", column)))
                assert crash.status_code == 500, crash.text
                assert crash.json()["request_id"] == crash.headers["X-Request-Id"] == f"bug-{n}"
            assert served.stop() == 0
        output = served.output()

    for name, key in keys.items():
        hidden[f"{name} key"] = key
        hidden[f"{name} key past its prefix"] = key[10:]
        hidden[f"{name} key's hash"] = hash_key(key)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    for name, value in hidden.items():
        assert value not in output, f"the {name} is in the server's log"
    for n in range(2):  # each bug's traceback is on a line with its request's id
        bug = [line for line in lines if line["request_id"] == f"bug-{n}"]
        assert any("parameters hidden" in line.get("exception", "") for line in bug), bug
        assert {"status": 500, "path": "/v1/purchases"}.items() <= bug[-1].items()
    assert any(line.get("path") == "/dashboard/login/email/[redacted]" for line in lines)
    assert any("Booting worker" in line["message"] for line in lines)  # gunicorn's, as JSON
