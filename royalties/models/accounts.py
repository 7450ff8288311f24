"""Credentials: API keys and sign-in links, random secrets stored only as SHA-256 hashes.

Both carry 160 bits from the OS random source, so a fast hash is the right tool (as for
GitHub or Stripe tokens): nothing to brute-force, and lookups stay one indexed read.

A sign-in link (``royalties/sign_in.py``) names the role and owner it signs in as, like
a key; it can be used once, before ``expires_at``, and the dashboard session it opened
lasts until ``ended_at`` (sign-out).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import Base, UTCDateTime, utcnow

ROLES = ("admin", "artist", "storefront", "fan")
#: Who may sign in to the dashboard (storefronts are programs).
PERSON_ROLES = ("admin", "artist", "fan")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('admin','artist','storefront','fan')", "role"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInLink(Base):
    __tablename__ = "sign_in_links"
    __table_args__ = (
        CheckConstraint("role IN ('admin','artist','fan')", "role"),
        CheckConstraint("expires_at > created_at", "expires_after_creation"),
        CheckConstraint("used_at IS NULL OR used_at < expires_at", "used_before_expiry"),
        CheckConstraint("ended_at IS NULL OR used_at IS NOT NULL", "ended_after_use"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address it was sent to: a session lasts while the owner still uses it.
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
