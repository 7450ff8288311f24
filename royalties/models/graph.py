"""The referral forest.

- ``fans.sponsor_id`` is set at most once and never to the fan itself or a descendant.
- ``fans.root_id`` names the root of the fan's tree; a sponsor S for fan F closes a loop
  exactly when ``S.root_id == F.id`` (F can only be given a sponsor while it is a root).
- ``fan_ancestors`` is a closure table cut at depth 5: row ``(fan, ancestor, depth)`` for
  each of the fan's first five ancestors. The upline and the downline counts per level
  are then one indexed query each, never a graph walk.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import Base, UTCDateTime, utcnow

#: How deep the influence chain goes, the one definition of "five levels": the closure
#: table's depth, a plan's number of rates and a reward's highest level.
MAX_DEPTH = 5


class Fan(Base):
    __tablename__ = "fans"
    __table_args__ = (
        UniqueConstraint("storefront_id", "external_id"),
        CheckConstraint("sponsor_id IS NULL OR sponsor_id <> id", "not_own_sponsor"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    handle: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    sponsor_id: Mapped[str | None] = mapped_column(ForeignKey("fans.id"), index=True)
    root_id: Mapped[str] = mapped_column(String(32), index=True)
    storefront_id: Mapped[str | None] = mapped_column(ForeignKey("storefronts.id"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    # Stripe Connect (SPEC section 6): the connected account, and whether it can be paid.
    stripe_account_id: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Apart from payouts_enabled at Stripe: a transfer needs the capability ``active``.
    transfers_active: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Attempts at creating the account that got no clear answer; the next uses a new key.
    account_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Salted hash of the address the fan signed up from (fraud signals); never the address.
    signup_ip_hash: Mapped[str | None] = mapped_column(String(64))
    # Emails about rewards and payouts (royalties/notify/fans.py); the fan switches them off.
    notify_email: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FanAncestor(Base):
    __tablename__ = "fan_ancestors"
    __table_args__ = (
        CheckConstraint(f"depth >= 1 AND depth <= {MAX_DEPTH}", "depth_range"),
        Index("ix_fan_ancestors_ancestor_depth", "ancestor_id", "depth"),
    )

    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id"), primary_key=True)
    depth: Mapped[int] = mapped_column(Integer, primary_key=True)
    ancestor_id: Mapped[str] = mapped_column(ForeignKey("fans.id"))
