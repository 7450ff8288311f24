"""Delivering webhooks: lease due deliveries, sign, post, record every attempt.

What a receiver can count on, and how this module keeps it:

- **At least once, same id.** A delivery is leased (``claimed_until``) and committed
  before anything is sent; the result is recorded after. A worker killed in between
  leaves the lease to run out (:attr:`Settings.lease`), and the delivery is sent again
  with the same ``webhook-id`` (the event's id) and body. Results are recorded only under
  the lease they were sent with.
- **Signed the Standard Webhooks way** (``standardwebhooks``): ``webhook-id``,
  ``webhook-timestamp`` (the time of this attempt) and ``webhook-signature`` = ``v1,``
  + base64 HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` with the endpoint's secret, and
  a second signature with the previous secret while a rotation overlaps.
- **Timeouts and redirects.** Connecting and each read time out after
  ``WEBHOOK_TIMEOUT_SECONDS``; redirects are never followed (a 3xx is a failure), so a
  receiver cannot send us to another host.
- **Retries.** A non-2xx answer, a timeout or a refused connection is an attempt that
  failed; attempt *n* failed, the next is due ``WEBHOOK_RETRY_SCHEDULE[n-1]`` seconds
  later; past the schedule the delivery is ``failed``. A receiver that does not answer
  at all (refused, timed out) stops its batch: its other leased deliveries wait until
  the failed one's retry, without spending an attempt, so a receiver that is down for a
  while gets its backlog when it is back instead of a retry schedule run out.
- **Failing endpoints are disabled.** ``failing_since`` is the first failure after the
  endpoint's last success; once that is ``WEBHOOK_DISABLE_AFTER_HOURS`` old, the
  endpoint is disabled with a reason (the API and the dashboard show it; enabling it
  again resumes its pending deliveries).
- **One slow receiver never delays the others.** Each endpoint's deliveries go out as a
  batch (up to :attr:`Settings.per_endpoint`, in due order, over one kept-alive
  connection) in a thread of its own; an endpoint with a batch in flight is not claimed
  again by this worker, and a batch stops starting new posts once its lease is nearly
  used (:attr:`Settings.budget`). With several workers (PostgreSQL), the claim is a
  conditional ``UPDATE``: each delivery is leased by one worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import Select, or_, select, true, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from royalties.db import insert_rows, make_sessionmaker, table, utcnow
from royalties.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from royalties.services._tx import unit_of_work

log = logging.getLogger("royalties.webhooks")

#: Seconds between attempts, in the spirit of Standard Webhooks' own schedule.
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
READ_LIMIT = 64 * 1024  # what we read of an answer before closing the connection
USER_AGENT = "royalties-webhooks/1"


def parse_schedule(text: str) -> tuple[int, ...]:
    """``"5,300,1800"`` as seconds; ValueError for anything but non-negative integers."""
    parts = [part.strip() for part in text.split(",")]
    if not parts or any(not part.isdigit() for part in parts):
        raise ValueError(
            f"a retry schedule is seconds separated by commas, such as '5,300,1800', got {text!r}"
        )
    return tuple(int(part) for part in parts)


@dataclass(frozen=True)
class Settings:
    schedule: tuple[int, ...] = DEFAULT_SCHEDULE
    timeout: float = 5.0
    disable_after: timedelta = timedelta(hours=120)
    concurrency: int = 16  # endpoints in flight at once, per worker
    per_endpoint: int = 50  # deliveries in one endpoint's batch

    @property
    def lease(self) -> timedelta:
        """How long a claim holds: long enough for a batch to run within :attr:`budget`."""
        return timedelta(seconds=max(6 * self.timeout, 3.0))

    @property
    def budget(self) -> float:
        """Seconds into a batch after which it starts no new post (one more may take
        ``timeout``, and recording needs a moment)."""
        return self.lease.total_seconds() - 2 * self.timeout

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        schedule = config.get("WEBHOOK_RETRY_SCHEDULE") or DEFAULT_SCHEDULE
        if isinstance(schedule, str):
            schedule = parse_schedule(schedule)
        hours = config.get("WEBHOOK_DISABLE_AFTER_HOURS")
        return cls(
            schedule=tuple(schedule),
            timeout=float(config.get("WEBHOOK_TIMEOUT_SECONDS") or 5.0),
            disable_after=timedelta(hours=float(120 if hours is None else hours)),
            concurrency=int(config.get("WEBHOOK_CONCURRENCY") or 16),
        )


def signature_headers(
    endpoint: WebhookEndpoint | _Due, event_id: str, body: str, at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt made at ``at``."""
    signatures = [Webhook(endpoint.secret).sign(event_id, at, body)]
    previous, until = endpoint.previous_secret, endpoint.previous_secret_until
    if previous and until is not None and at < until:
        signatures.append(Webhook(previous).sign(event_id, at, body))
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


@dataclass(frozen=True)
class _Due:
    """A leased delivery with what sending it needs."""

    id: int
    endpoint_id: str
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    event_id: str
    body: str
    attempts: int  # made before this one


@dataclass(frozen=True)
class _Result:
    due: _Due
    at: datetime
    status: int | None  # None: no answer (refused, timed out)
    duration_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class Claim:
    """One endpoint's leased batch."""

    endpoint_id: str
    lease: datetime
    due: list[_Due] = field(default_factory=list)


def _due_now(now: datetime) -> tuple[Any, ...]:
    return (
        WebhookDelivery.state == "pending",
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
    )


def _candidates(
    session: Session, now: datetime, settings: Settings, exclude: Collection[str], slots: int
) -> list[int]:
    """Ids of the due deliveries to lease: up to ``per_endpoint`` of each of the
    ``slots`` endpoints whose oldest due delivery is oldest. Each endpoint's are read
    from the ``(endpoint_id, next_attempt_at)`` index of pending deliveries, never by
    scanning the whole backlog; on PostgreSQL in one statement (``LATERAL``) that skips
    rows another worker is claiming (``FOR UPDATE SKIP LOCKED``)."""
    enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.disabled_at.is_(None))
    if exclude:
        enabled = enabled.where(WebhookEndpoint.id.not_in(list(exclude)))

    def due_of(endpoint_id: Any) -> Select[int, datetime]:
        return (
            select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
            .where(WebhookDelivery.endpoint_id == endpoint_id, *_due_now(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(settings.per_endpoint)
        )

    rows: list[tuple[str, int, datetime]]
    if session.get_bind().dialect.name == "postgresql":
        owners = enabled.subquery()
        due = due_of(owners.c.id).with_for_update(skip_locked=True).lateral()
        query = select(owners.c.id, due.c.id, due.c.next_attempt_at).join(due, true())
        rows = [(e, d, at) for e, d, at in session.execute(query)]
    else:  # one writer; each query an index range, in process
        rows = [
            (endpoint_id, delivery_id, at)
            for endpoint_id in session.scalars(enabled)
            for delivery_id, at in session.execute(due_of(endpoint_id))
        ]
    by_endpoint: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for endpoint_id, delivery_id, at in rows:
        by_endpoint[endpoint_id].append((at, delivery_id))
    oldest_first = sorted(by_endpoint.values(), key=min)[:slots]
    return [delivery_id for batch in oldest_first for _, delivery_id in batch]


def claim(
    engine: Engine,
    now: datetime,
    settings: Settings,
    *,
    exclude: Collection[str] = (),
    endpoints: int | None = None,
) -> list[Claim]:
    """Lease up to ``settings.per_endpoint`` due deliveries of each of up to
    ``endpoints`` (default ``settings.concurrency``) enabled endpoints not in
    ``exclude``, and commit. Deliveries leased by someone else are left alone."""
    lease = now + settings.lease
    with make_sessionmaker(engine)() as session, unit_of_work(session):
        ids = _candidates(session, now, settings, exclude, endpoints or settings.concurrency)
        if not ids:
            return []
        leased = set(
            session.scalars(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(ids), *_due_now(now))
                .values(claimed_until=lease)
                .returning(WebhookDelivery.id)
                .execution_options(synchronize_session=False)
            )
        )
        rows = session.execute(
            select(
                WebhookDelivery.id,
                WebhookDelivery.endpoint_id,
                WebhookDelivery.attempts,
                WebhookEndpoint.url,
                WebhookEndpoint.secret,
                WebhookEndpoint.previous_secret,
                WebhookEndpoint.previous_secret_until,
                Event.id,
                Event.body,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(Event, Event.seq == WebhookDelivery.event_seq)
            .where(WebhookDelivery.id.in_(sorted(leased)))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        ).all()
    claims: dict[str, Claim] = {}
    for row in rows:
        batch = claims.setdefault(row[1], Claim(row[1], lease))
        batch.due.append(
            _Due(
                id=row[0],
                endpoint_id=row[1],
                attempts=row[2],
                url=row[3],
                secret=row[4],
                previous_secret=row[5],
                previous_secret_until=row[6],
                event_id=row[7],
                body=row[8],
            )
        )
    return list(claims.values())


def _post(http: urllib3.PoolManager, due: _Due, timeout: float) -> _Result:
    at = utcnow()
    headers = signature_headers(due, due.event_id, due.body, at)
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        answer = http.request(
            "POST",
            due.url,
            body=due.body.encode(),
            headers=headers,
            redirect=False,
            preload_content=False,
        )
        status = answer.status
        if len(answer.read(READ_LIMIT + 1)) > READ_LIMIT:
            answer.close()  # a long answer: not worth reading on, nor the connection reused
        else:
            answer.release_conn()
        if 300 <= status < 400:
            error = f"HTTP {status}: redirects are not followed"
        elif not 200 <= status < 300:
            error = f"HTTP {status}"
    except urllib3.exceptions.TimeoutError:
        error = f"no answer within {timeout:g} s"
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        error = f"could not connect: {type(reason).__name__}"
    except ValueError as exc:  # a URL urllib3 cannot use
        error = f"could not post: {exc}"[:500]
    took = int((time.perf_counter() - started) * 1000)
    return _Result(due, at, status, took, error)


def send(batch: Claim, settings: Settings) -> list[_Result]:
    """Post the batch's deliveries in order over one connection, until done, the
    receiver does not answer, or the batch's time is up."""
    timeout = urllib3.Timeout(connect=settings.timeout, read=settings.timeout)
    results: list[_Result] = []
    started = time.monotonic()
    with urllib3.PoolManager(num_pools=2, maxsize=1, retries=False, timeout=timeout) as http:
        for due in batch.due:
            if results and time.monotonic() - started > settings.budget:
                break
            result = _post(http, due, settings.timeout)
            results.append(result)
            if result.status is None:
                break
    return results


def record(engine: Engine, batch: Claim, results: Sequence[_Result], settings: Settings) -> None:
    """Write the batch's attempts and what follows from them, in one transaction."""
    with make_sessionmaker(engine)() as session, unit_of_work(session):
        _record(session, batch, results, settings)


def _record(session: Session, batch: Claim, results: Sequence[_Result], settings: Settings) -> None:
    # The endpoint's row first, locked: a deletion (which locks it first too) either
    # finished, taking the deliveries with it, and there is nothing to record, or waits.
    endpoint = session.get(WebhookEndpoint, batch.endpoint_id, with_for_update=True)
    if endpoint is None:
        return
    mine = WebhookDelivery.claimed_until == batch.lease
    insert_rows(
        session.connection(),
        table(WebhookAttempt),
        [
            {
                "delivery_id": r.due.id,
                "at": r.at,
                "status_code": r.status,
                "duration_ms": r.duration_ms,
                "error": r.error,
            }
            for r in results
        ],
    )
    retry_at: datetime | None = None
    accepted: dict[int | None, list[_Result]] = defaultdict(list)
    for r in results:
        if r.ok:
            accepted[r.status].append(r)
            continue
        values: dict[str, Any] = {
            "attempts": r.due.attempts + 1,
            "last_status": r.status,
            "last_error": r.error,
            "claimed_until": None,
        }
        if r.due.attempts + 1 > len(settings.schedule):
            values.update(state="failed")
        else:
            retry_at = r.at + timedelta(seconds=settings.schedule[r.due.attempts])
            values.update(next_attempt_at=retry_at)
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == r.due.id, mine)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    # The accepted ones in one statement per status: ``delivered_at`` is when the last of
    # them was accepted (the attempt log has each one's own time).
    for status, group in accepted.items():
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([r.due.id for r in group]), mine)
            .values(
                state="delivered",
                delivered_at=max(r.at for r in group),
                attempts=WebhookDelivery.attempts + 1,
                last_status=status,
                last_error=None,
                claimed_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    unsent = [due.id for due in batch.due[len(results) :]]
    if unsent:
        # Not answering: the rest wait for the failed one's retry. Out of time: due now.
        later: dict[str, Any] = {"claimed_until": None}
        if results and results[-1].status is None and retry_at is not None:
            later["next_attempt_at"] = retry_at
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(unsent), mine)
            .values(**later)
            .execution_options(synchronize_session=False)
        )
    _judge_endpoint(endpoint, results, settings)


def _judge_endpoint(
    endpoint: WebhookEndpoint, results: Sequence[_Result], settings: Settings
) -> None:
    """Keep ``failing_since`` and disable an endpoint that has failed for too long."""
    if not results:
        return
    last_ok = max((r.at for r in results if r.ok), default=None)
    failures_after = [r.at for r in results if not r.ok and (last_ok is None or r.at > last_ok)]
    if last_ok is not None:
        endpoint.failing_since = min(failures_after, default=None)
    elif endpoint.failing_since is None:
        endpoint.failing_since = failures_after[0]
    since = endpoint.failing_since
    latest = results[-1]
    if (
        since is not None
        and endpoint.disabled_at is None
        and latest.at - since >= settings.disable_after
    ):
        endpoint.disabled_at = latest.at
        endpoint.disabled_reason = (
            f"every delivery failed since {since:%Y-%m-%d %H:%M} UTC "
            f"(last: {latest.error}); fix the receiver, then enable the endpoint again"
        )[:500]
        log.warning("webhook endpoint %s disabled: failing since %s", endpoint.id, since)


class Deliverer:
    """The worker's delivery job: each round leases what is due for the endpoints that
    have no batch in flight, and hands each endpoint's batch to a thread; :meth:`stop`
    waits for the batches in flight (each ends within its lease)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="webhooks")
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def run(self, engine: Engine, _config: Mapping[str, Any], now: datetime) -> int:
        """Hand out one round; returns how many deliveries were handed out."""
        with self._lock:
            busy = frozenset(self._busy)
        free = self.settings.concurrency - len(busy)
        if free <= 0:
            return 0
        batches = claim(engine, now, self.settings, exclude=busy, endpoints=free)
        for batch in batches:
            with self._lock:
                self._busy.add(batch.endpoint_id)
            self._threads.submit(self._deliver, engine, batch)
        return sum(len(batch.due) for batch in batches)

    def _deliver(self, engine: Engine, batch: Claim) -> None:
        try:
            deliver_batch(engine, batch, self.settings)
        except Exception:
            log.exception("webhook batch for endpoint %s not recorded", batch.endpoint_id)
        finally:
            with self._lock:
                self._busy.discard(batch.endpoint_id)

    def idle(self) -> bool:
        with self._lock:
            return not self._busy

    def stop(self) -> None:
        self._threads.shutdown(wait=True)


def deliver_batch(engine: Engine, batch: Claim, settings: Settings) -> list[_Result]:
    results = send(batch, settings)
    record(engine, batch, results, settings)
    sent = sum(r.ok for r in results)
    if results:
        log.info(
            "webhooks to endpoint %s: %d delivered, %d failed",
            batch.endpoint_id,
            sent,
            len(results) - sent,
        )
    return results


def deliver_due(
    engine: Engine,
    config: Mapping[str, Any],
    now: datetime | None = None,
    *,
    settings: Settings | None = None,
) -> int:
    """Deliver everything due at ``now``, batch after batch, and wait for it (tests,
    ``royalties worker --once``); returns how many attempts succeeded."""
    settings = settings or Settings.from_config(config)
    delivered = 0
    while True:
        batches = claim(engine, now or utcnow(), settings)
        if not batches:
            return delivered
        with ThreadPoolExecutor(settings.concurrency) as threads:
            done = threads.map(lambda b: deliver_batch(engine, b, settings), batches)
            delivered += sum(r.ok for results in done for r in results)
