"""Share links and their clicks.

Clicks are the highest-volume write: one narrow row, no foreign key to check, and a
single index on the link code so per-link counts stay cheap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow


class ShareLink(Base):
    __tablename__ = "share_links"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    fan_id: Mapped[str] = mapped_column(ForeignKey("fans.id"), index=True)
    content_id: Mapped[str] = mapped_column(ForeignKey("content.id"), index=True)
    artist_id: Mapped[str] = mapped_column(ForeignKey("artists.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Click(Base):
    __tablename__ = "clicks"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip_hash: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(512))
