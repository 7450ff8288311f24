"""Cached insights per artist: recomputed on demand or when stale (never per purchase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import Base, UTCDateTime, utcnow


class InsightsCache(Base):
    __tablename__ = "insights_cache"

    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id"), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How many purchases the figures cover: a different count means they are stale.
    purchase_count: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
