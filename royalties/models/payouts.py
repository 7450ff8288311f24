"""Payouts through Stripe Connect.

- A payout is claimed (row + ledger move ``fan_available -> payout_clearing``) and
  committed *before* Stripe is called; its id is the Stripe idempotency key, so any
  retry, by this run or the next, can only ever produce one transfer.
- States: ``pending`` (claimed, not yet sent; a run commits a fresh claim already
  ``submitted`` for its first attempt, so ``pending`` shows in the audit trail and in
  payouts of earlier versions), ``submitted`` (being sent or sent; outcome unknown
  until confirmed), ``paid`` (transfer exists; clearing -> ``fan_paid``), ``failed``
  (Stripe refused, or the transfer was reversed; money back to ``fan_available``).
- A partial unique index allows one open (pending/submitted) payout per fan and
  currency, a second guard beside the per-fan lock the claim takes.
- ``payout_events`` is the audit trail: every state change with its reason.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow

PAYOUT_STATES = ("pending", "submitted", "paid", "failed")
OPEN_STATES = ("pending", "submitted")


class PayoutRun(Base):
    """One payout run. A run started from the dashboard also records who asked, its
    progress (``total`` payouts to settle, ``done`` so far, when that was last written),
    what it did not pay and why, and the error that stopped it, if one did; the rules
    that read these columns live in ``royalties/payouts/tracking.py``."""

    __tablename__ = "payout_runs"
    __table_args__ = (
        CheckConstraint("done >= 0 AND (total IS NULL OR done <= total)", "progress_bounds"),
        Index("ix_payout_runs_started_at_id", "started_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    min_payout: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[int | None] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # reason (payable.NOT_PAID_REASONS) -> count; currency -> minor units held back
    not_paid: Mapped[dict[str, int] | None] = mapped_column(JSON)
    balance_short: Mapped[dict[str, int] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("state IN ('pending','submitted','paid','failed')", "state"),
        CheckConstraint("reversed_amount >= 0 AND reversed_amount <= amount", "reversal_bounds"),
        Index(
            "uq_payouts_one_open_per_fan_currency",
            "fan_id",
            "currency",
            unique=True,
            sqlite_where=text("state IN ('pending','submitted')"),
            postgresql_where=text("state IN ('pending','submitted')"),
        ),
        Index("ix_payouts_state", "state"),
        Index("ix_payouts_fan_id_created_at", "fan_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("payout_runs.id"), index=True)
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    destination: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The idempotency key of the latest attempt (None: the payout id, as the first
    # attempt uses) and when that attempt was sent (see royalties/payouts/machine.py).
    stripe_key: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PayoutEvent(Base):
    __tablename__ = "payout_events"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    payout_id: Mapped[str] = mapped_column(ForeignKey("payouts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(500), default="")


class WebhookEvent(Base):
    """A Stripe event id seen once: replays of the same event change nothing."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
