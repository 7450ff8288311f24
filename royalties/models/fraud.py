"""Fraud signals, their clearances, and the review decisions on held rewards.

A signal records why something looks gamed, on the reward, fan or link it concerns.
A reward with a signal is ``held``: it never matures, so it stays out of payouts,
until an admin approves it (it moves on as usual) or rejects it (reversed in the
ledger). A signal on a fan or a link is *active* until an admin clears it. Signals are
never edited: a decision and a clearance are rows of their own, each kept with who
made it, when and why, and each made once (a UNIQUE on what it concerns). The rules
that read these tables live in ``royalties.fraud``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow

SIGNAL_KINDS = (
    "shared_email",  # buyer and level-1 fan share an email address
    "shared_address",  # buyer and level-1 fan share a client-address hash
    "signup_farm",  # a sponsor's recent sign-ups mostly come from one address
    "click_flood",  # a link with many clicks from one address and no sales
    "storefront_burst",  # a downline that buys only through one storefront right after sign-up
)


class FraudSignal(Base):
    __tablename__ = "fraud_signals"
    __table_args__ = (
        CheckConstraint("subject_type IN ('reward','fan','link')", "subject_type"),
        Index("ix_fraud_signals_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignalClearance(Base):
    """An admin's judgement that a signal on a fan or a link holds no more rewards."""

    __tablename__ = "fraud_signal_clearances"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    # UNIQUE: a signal is cleared once; its index is what the purchase path probes.
    signal_id: Mapped[int] = mapped_column(ForeignKey("fraud_signals.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(500))
    cleared_by: Mapped[str] = mapped_column(String(32))
    cleared_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewDecision(Base):
    __tablename__ = "review_decisions"
    __table_args__ = (CheckConstraint("decision IN ('approve','reject')", "decision"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    reward_id: Mapped[str] = mapped_column(ForeignKey("rewards.id"), unique=True)
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    decided_by: Mapped[str] = mapped_column(String(32))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
