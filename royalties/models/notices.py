"""Fan notifications and the worker's schedule.

- ``fan_notices``: the fan mail queue, one row per event a fan is told about
  (``reward.created``, ``reward.available``, ``payout.paid``), written by the outbox's
  fan-out in the same transaction that fans the event out, with the event's ``data`` as
  the API showed it. A row is due at ``due_at``; a sender leases it (``claimed_until``)
  with the fan's other due rows of the same kind, sends one message for them, then sets
  ``sent_at``. A sender killed mid-send leaves the lease to run out: the rows are sent
  again (at most that one message twice). ``dropped`` says why a row was never sent
  (the fan switched notifications off, or has no address any more).
- ``worker_schedule``: one row per periodic job, the next time it is due. A worker runs a
  job only after moving ``next_due_at`` on past ``now`` in one ``UPDATE .. WHERE
  next_due_at <= now``: of several workers, exactly one matches, so a job runs once per
  due time however many workers there are. ``schedule`` is what the time was computed
  from; a changed schedule (an edited ``PAYOUT_SCHEDULE``) computes it afresh.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow

NOTICE_KINDS = ("reward.created", "reward.available", "payout.paid")


class FanNotice(Base):
    __tablename__ = "fan_notices"
    __table_args__ = (
        CheckConstraint("kind IN ('reward.created','reward.available','payout.paid')", name="kind"),
        Index(
            "ix_fan_notices_due",
            "due_at",
            postgresql_where=text("sent_at IS NULL AND dropped IS NULL"),
            sqlite_where=text("sent_at IS NULL AND dropped IS NULL"),
        ),
        Index("ix_fan_notices_fan_kind", "fan_id", "kind"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id"))
    kind: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(32), unique=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dropped: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(500))


class WorkerSchedule(Base):
    __tablename__ = "worker_schedule"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(128))
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
