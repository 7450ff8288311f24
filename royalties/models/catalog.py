"""Artists, storefronts, content and versioned reward plans.

A reward plan is never edited: each change inserts a new version for its scope
(``artist:<id>`` or ``content:<id>``), so every purchase can point at exactly the plan
it was computed with.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import Base, UTCDateTime, utcnow

CONTENT_KINDS = ("track", "video", "art", "book", "other")


class Artist(Base):
    __tablename__ = "artists"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # Where the artist's sign-in links go (normalised to lower case, as fans' emails).
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Storefront(Base):
    __tablename__ = "storefronts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Content(Base):
    __tablename__ = "content"
    __table_args__ = (
        CheckConstraint("kind IN ('track','video','art','book','other')", "kind"),
        CheckConstraint("price >= 0", "price_nonnegative"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16))
    price: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    storefront_url: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RewardPlan(Base):
    __tablename__ = "reward_plans"
    __table_args__ = (
        UniqueConstraint("scope", "version"),
        CheckConstraint("version >= 1", "version_positive"),
        CheckConstraint("hold_days >= 0 AND hold_days <= 365", "hold_days_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(48))
    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id"), index=True)
    content_id: Mapped[str | None] = mapped_column(ForeignKey("content.id"))
    version: Mapped[int] = mapped_column(Integer)
    level_rates_bps: Mapped[list[int]] = mapped_column(JSON)
    hold_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
