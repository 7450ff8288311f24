"""The fan-out: new events become deliveries, and reach the fan mail queue.

One round takes the events not fanned out yet, oldest first, :data:`BATCH` at a time,
and in one transaction per batch: writes one ``pending`` delivery for every enabled
endpoint that sees the event (``endpoints.sees``), hands the events to each consumer
(the fan mail queue), and marks them fanned out. A worker killed mid-round rolls its
batch back, and the next round does it again; a delivery is unique per endpoint and
event, so nothing is ever made twice.

On PostgreSQL a batch's events are locked with ``FOR UPDATE SKIP LOCKED``: several
workers fan out different events at once. An event that commits late (a long purchase
transaction) is still found: the flag, not a high-water mark on ``seq``, says what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties.db import insert_or_ignore, make_sessionmaker, table
from royalties.models import Event, WebhookDelivery, WebhookEndpoint
from royalties.notify.fans import queue
from royalties.services._tx import unit_of_work
from royalties.webhooks.endpoints import sees

BATCH = 500

#: Something else that reads each event once, in the fan-out's transaction.
FanOutConsumer = Callable[[Session, Sequence[Event], datetime], None]
CONSUMERS: tuple[FanOutConsumer, ...] = (queue,)


def fan_out(
    engine: Engine,
    _config: Mapping[str, Any],
    now: datetime,
    *,
    consumers: Sequence[FanOutConsumer] = CONSUMERS,
) -> int:
    """Fan out every event not fanned out yet; returns how many events."""
    done = 0
    with make_sessionmaker(engine)() as session:
        while True:
            count = _batch(session, now, consumers)
            done += count
            if count < BATCH:
                return done


def _batch(session: Session, now: datetime, consumers: Sequence[FanOutConsumer]) -> int:
    with unit_of_work(session):
        query = select(Event).where(~Event.fanned_out).order_by(Event.seq).limit(BATCH)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        events = list(session.scalars(query))
        if not events:
            return 0
        endpoints = list(
            session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None)))
        )
        rows = [
            {
                "endpoint_id": endpoint.id,
                "event_seq": event.seq,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for event in events
            for endpoint in endpoints
            if sees(endpoint, event)
        ]
        if rows:
            session.execute(insert_or_ignore(session, table(WebhookDelivery)), rows)
        for consumer in consumers:
            consumer(session, events, now)
        session.execute(
            update(Event)
            .where(Event.seq.in_([event.seq for event in events]))
            .values(fanned_out=True)
            .execution_options(synchronize_session=False)
        )
    return len(events)
