"""Events out: the transactional outbox and the webhooks that deliver it.

- ``events``: one row per change of money or membership, inserted in the same
  transaction as the change (a rolled-back purchase leaves none; a committed one always
  has its events). ``body`` is the exact JSON every receiver gets, ``{id, type,
  created_at, data}``, fixed once written, so every attempt of every delivery signs the
  same bytes. ``storefront_id``, ``artist_id`` and ``fan_id`` say whose it is: who may
  see it. ``seq`` orders events by insertion; ``fanned_out`` is false until a worker
  has made its deliveries (a partial index keeps those few cheap to find, and a worker
  claims them with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a transaction that
  commits late is never skipped the way a high-water mark on ``seq`` would skip it).
- ``webhook_endpoints``: a URL of an admin, artist or storefront, the event types it
  wants (null: all), its signing secret (``whsec_`` + base64; during a rotation the
  previous one signs too, until ``previous_secret_until``), ``failing_since`` (the
  first failure after its last success) and ``disabled_at`` with a reason once it
  failed for too long.
- ``webhook_deliveries``: one per (endpoint, event): ``pending`` until the receiver
  answered 2xx (``delivered``) or the retry schedule ran out (``failed``).
  ``next_attempt_at`` is when it is due; ``claimed_until`` is a worker's lease, so a
  worker killed mid-delivery loses nothing: the lease runs out and another takes it.
- ``webhook_attempts``: each try, with its status, time taken and error.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow

EVENT_TYPES = (
    "purchase.recorded",
    "refund.recorded",
    "fan.enrolled",
    "reward.created",
    "reward.available",
    "reward.held",
    "reward.released",
    "reward.rejected",
    "reward.reversed",
    "payout.paid",
    "payout.failed",
    "payout.reversed",
)
ENDPOINT_OWNERS = ("admin", "artist", "storefront")
DELIVERY_STATES = ("pending", "delivered", "failed")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index(
            "ix_events_not_fanned_out",
            "seq",
            postgresql_where=text("NOT fanned_out"),
            sqlite_where=text("NOT fanned_out"),
        ),
    )

    seq: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    # Not indexed: a replay finds a time by a binary search over ``seq`` (see replay in
    # royalties/webhooks/endpoints.py), so no sale pays for an index on it.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    body: Mapped[str] = mapped_column(Text)
    storefront_id: Mapped[str | None] = mapped_column(String(32))
    artist_id: Mapped[str | None] = mapped_column(String(32))
    fan_id: Mapped[str | None] = mapped_column(String(32))
    fanned_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint("owner_role IN ('admin','artist','storefront')", name="owner_role"),
        CheckConstraint("owner_role = 'admin' OR owner_id IS NOT NULL", name="owner_named"),
        Index("ix_webhook_endpoints_owner", "owner_role", "owner_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_role: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str] | None] = mapped_column(JSON)  # None: every type
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_seq"),
        CheckConstraint("state IN ('pending','delivered','failed')", name="state"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
        Index(  # a worker's claim: each endpoint's due deliveries, in due order
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
