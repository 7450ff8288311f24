"""Purchases, the rewards they earned, and refunds.

A purchase stores the influence chain (``chain``: the fan id at each level, buyer
positions included) and the plan version it used, so later graph or plan changes never
alter a recorded sale. ``refunded_amount`` only grows, is guarded by a row lock in the
refund service, and a CHECK keeps it within the amount. A reward's ``reversed_amount``
likewise only grows and never exceeds its amount.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import Base, UTCDateTime, utcnow
from royalties.models.graph import MAX_DEPTH

REWARD_STATES = ("pending", "available")


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= amount", "refund_bounds"),
        CheckConstraint("artist_share >= 0 AND fee >= 0", "shares_nonnegative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    storefront_id: Mapped[str] = mapped_column(ForeignKey("storefronts.id"), index=True)
    content_id: Mapped[str] = mapped_column(ForeignKey("content.id"), index=True)
    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id"), index=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("fans.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    artist_share: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    plan_id: Mapped[int] = mapped_column(ForeignKey("reward_plans.id"))
    plan_version: Mapped[int] = mapped_column(Integer)
    share_code: Mapped[str | None] = mapped_column(String(16))
    chain: Mapped[list[Any]] = mapped_column(JSON)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # Salted hash of the buyer's address as the storefront reported it (fraud signals).
    client_ip_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reward(Base):
    __tablename__ = "rewards"
    __table_args__ = (
        UniqueConstraint("purchase_id", "level"),
        CheckConstraint(f"level >= 1 AND level <= {MAX_DEPTH}", "level_range"),
        CheckConstraint("amount > 0", "amount_positive"),
        CheckConstraint("reversed_amount >= 0 AND reversed_amount <= amount", "reversal_bounds"),
        CheckConstraint("state IN ('pending','available')", "state"),
        Index("ix_rewards_state_available_at", "state", "available_at"),
        Index("ix_rewards_fan_id_created_at", "fan_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("purchases.id"))
    level: Mapped[int] = mapped_column(Integer)
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None: nothing to review. 'held': a fraud signal keeps it from maturing (and so from
    # payouts) until an admin decides; then 'approved' or 'rejected'.
    review_state: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount > 0", "amount_positive"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(ForeignKey("purchases.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    artist_reversed: Mapped[int] = mapped_column(BigInteger)
    fee_reversed: Mapped[int] = mapped_column(BigInteger)
    reversed: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
