"""The delivery rules, one at a time, in process: the retry schedule, timeouts, no
redirects, disabling an endpoint that keeps failing, a rotation's two signatures, and
one slow receiver that does not hold up another."""

from __future__ import annotations

import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from royalties.db import utcnow
from royalties.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from royalties.webhooks import Deliverer, Settings, deliver_due, fan_out
from royalties.webhooks.delivery import claim, parse_schedule, record, send
from royalties.webhooks.endpoints import Owner, delete_endpoint, enable_endpoint, rotate_secret
from tests.api.live import free_port
from tests.webhooks.conftest import Receiver, endpoint_for, endpoint_row, wait_for
from tests.webhooks.test_worker_delivers import backlog

ADMIN = Owner("admin", None)
QUICK = Settings(schedule=(0, 0), timeout=0.5, concurrency=4)


def deliveries(session: Session, endpoint_id: str) -> list[WebhookDelivery]:
    session.expire_all()
    found = list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
        )
    )
    session.expunge_all()
    session.rollback()
    return found


def test_a_schedule_is_seconds_separated_by_commas():
    assert parse_schedule("5, 300,1800") == (5, 300, 1800)
    for bad in ("", "5,,6", "-1", "1.5", "5 s"):
        with pytest.raises(ValueError, match="seconds separated by commas"):
            parse_schedule(bad)


def test_a_failing_receiver_is_retried_on_the_schedule_then_given_up(session, engine, receiver):
    endpoint_id, _ = endpoint_for(session, ADMIN, receiver.url)
    backlog(session, 1)
    fan_out(engine, {}, utcnow())
    receiver.fail_next(10, status=500)
    slow = Settings(schedule=(60, 600), timeout=0.5)
    before = utcnow()
    assert deliver_due(engine, {}, settings=slow) == 0
    [delivery] = deliveries(session, endpoint_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    waited = delivery.next_attempt_at - before
    assert timedelta(seconds=59) < waited < timedelta(seconds=62)  # schedule[0] after it
    assert deliver_due(engine, {}, settings=slow) == 0  # not due yet: nothing sent
    assert len(receiver.ok_requests()) == 1
    # Past the schedule (1 + 2 retries): failed, and never sent again.
    deliver_due(engine, {}, utcnow() + timedelta(seconds=61), settings=slow)
    deliver_due(engine, {}, utcnow() + timedelta(seconds=700), settings=slow)
    [delivery] = deliveries(session, endpoint_id)
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    deliver_due(engine, {}, utcnow() + timedelta(days=1), settings=slow)
    assert len(receiver.ok_requests()) == 3


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    status = 302
    pause = 0.0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.pause)
        self.send_response(self.status)
        self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/hook"


def test_a_redirect_is_a_failure_never_followed(session, engine):
    server, url = _serve(_Answer)
    try:
        endpoint_id, _ = endpoint_for(session, ADMIN, url)
        backlog(session, 1)
        fan_out(engine, {}, utcnow())
        deliver_due(engine, {}, settings=Settings(schedule=(600,), timeout=1))
    finally:
        server.shutdown()
    [delivery] = deliveries(session, endpoint_id)
    assert (delivery.state, delivery.last_status) == ("pending", 302)
    assert delivery.last_error == "HTTP 302: redirects are not followed"


class _Slow(_Answer):
    status = 200
    pause = 1.5


def test_a_receiver_slower_than_the_timeout_is_an_attempt_that_failed(session, engine):
    server, url = _serve(_Slow)
    try:
        endpoint_id, _ = endpoint_for(session, ADMIN, url)
        backlog(session, 3)
        fan_out(engine, {}, utcnow())
        started = time.monotonic()
        deliver_due(engine, {}, settings=Settings(schedule=(600,), timeout=0.3))
        took = time.monotonic() - started
    finally:
        server.shutdown()
    rows = deliveries(session, endpoint_id)
    attempted = [d for d in rows if d.attempts]
    # The first timed out; the batch stopped there, the others wait for its retry
    # without an attempt spent.
    assert len(attempted) == 1 and attempted[0].last_error == "no answer within 0.3 s"
    assert attempted[0].last_status is None
    assert {d.next_attempt_at for d in rows} == {attempted[0].next_attempt_at}
    assert took < 1.4


def test_an_endpoint_failing_for_too_long_is_disabled_and_enabling_resumes_it(
    session, engine, receiver
):
    endpoint_id, _ = endpoint_for(session, ADMIN, receiver.url)
    settings = Settings(schedule=(0,) * 5, timeout=0.5, disable_after=timedelta(hours=120))
    backlog(session, 1)
    fan_out(engine, {}, utcnow())
    receiver.fail_next(1, status=500)
    deliver_due(engine, {}, settings=settings)  # fails, then succeeds on the retry
    assert endpoint_row(session, endpoint_id).failing_since is None
    receiver.fail_next(100, status=500)
    backlog(session, 1)
    fan_out(engine, {}, utcnow())
    deliver_due(engine, {}, settings=Settings(schedule=(3600,), timeout=0.5))
    since = endpoint_row(session, endpoint_id).failing_since
    assert since is not None and endpoint_row(session, endpoint_id).disabled_at is None
    # Five days of failures later, the next failure disables it.
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(failing_since=utcnow() - timedelta(hours=121))
    )
    session.commit()
    deliver_due(engine, {}, utcnow() + timedelta(hours=2), settings=settings)
    endpoint = endpoint_row(session, endpoint_id)
    assert endpoint.disabled_at is not None
    assert endpoint.disabled_reason is not None
    assert "every delivery failed since" in endpoint.disabled_reason
    assert "HTTP 500" in endpoint.disabled_reason
    # Disabled: nothing is fanned out to it or sent to it.
    sent = len(receiver.ok_requests())
    backlog(session, 2)
    fan_out(engine, {}, utcnow())
    assert len(deliveries(session, endpoint_id)) == 2
    deliver_due(engine, {}, utcnow() + timedelta(days=1), settings=settings)
    assert len(receiver.ok_requests()) == sent
    # Enabled again, its pending delivery goes out.
    receiver._answers.clear()
    enable_endpoint(session, ADMIN, endpoint_id)
    assert deliver_due(engine, {}, utcnow() + timedelta(hours=3), settings=settings) == 1
    assert [d.state for d in deliveries(session, endpoint_id)] == ["delivered", "delivered"]
    assert endpoint_row(session, endpoint_id).failing_since is None


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(session, engine, receiver):
    endpoint_id, old = endpoint_for(session, ADMIN, receiver.url)
    new = rotate_secret(session, ADMIN, endpoint_id).secret
    assert new != old and new.startswith("whsec_")
    backlog(session, 1)
    fan_out(engine, {}, utcnow())
    deliver_due(engine, {}, settings=QUICK)
    [request] = receiver.ok_requests()
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(request.body, request.headers)
    Webhook(new).verify(request.body, request.headers)
    # After the overlap only the new secret signs.
    session.execute(
        update(WebhookEndpoint).values(previous_secret_until=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    backlog(session, 1)
    fan_out(engine, {}, utcnow())
    deliver_due(engine, {}, settings=QUICK)
    later = receiver.ok_requests()[-1]
    Webhook(new).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(later.body, later.headers)


def test_a_leased_delivery_is_not_claimed_twice(session, engine, receiver):
    endpoint_for(session, ADMIN, receiver.url)
    backlog(session, 3)
    fan_out(engine, {}, utcnow())
    now = utcnow()
    [first] = claim(engine, now, QUICK)
    assert len(first.due) == 3
    assert claim(engine, now, QUICK) == []
    # Once the lease ran out (its holder died), another worker takes them.
    [again] = claim(engine, now + QUICK.lease + timedelta(seconds=1), QUICK)
    assert [d.id for d in again.due] == [d.id for d in first.due]


def test_one_slow_receiver_does_not_hold_up_another(session, engine, receiver):
    slow = Receiver(free_port())
    slow.delay = 1.0
    slow.start()
    try:
        endpoint_for(session, ADMIN, slow.url)
        endpoint_for(session, ADMIN, receiver.url)
        backlog(session, 5)
        fan_out(engine, {}, utcnow())
        deliverer = Deliverer(Settings(timeout=5, concurrency=4))
        started = time.monotonic()
        assert deliverer.run(engine, {}, utcnow()) == 10
        wait_for(lambda: len(receiver.ok_requests()) == 5, timeout=10, what="the fast receiver")
        fast_done = time.monotonic() - started
        assert len(slow.ok_requests()) <= 1  # still working through its batch
        deliverer.stop()
    finally:
        slow.stop()
    assert fast_done < 1.5
    assert len(slow.ok_requests()) == 5
    rows = session.execute(select(func.count()).where(WebhookDelivery.state == "delivered"))
    assert rows.scalar() == 10
    attempts = session.scalar(select(func.count()).select_from(WebhookAttempt))
    assert attempts == 10


def test_a_batch_whose_endpoint_was_deleted_meanwhile_records_nothing(session, engine, receiver):
    endpoint_id, _ = endpoint_for(session, ADMIN, receiver.url)
    backlog(session, 2)
    fan_out(engine, {}, utcnow())
    [batch] = claim(engine, utcnow(), QUICK)
    results = send(batch, QUICK)
    assert [r.ok for r in results] == [True, True]
    delete_endpoint(session, ADMIN, endpoint_id)
    record(engine, batch, results, QUICK)  # no foreign key broken, no error
    assert session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0
    assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
