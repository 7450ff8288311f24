"""The operator's audit log: who did what, to what, when.

One row per operator action (an artist or storefront created, a key rotated, a reward
decided...), written in the transaction of the action itself, so an action that rolls
back leaves no row and a row always names something that happened. Rows are never
edited. The actor is the key that acted (or the sign-in link whose session acted), with
its role and owner as they were then; ``detail`` is a small JSON object without secrets
(never a key, a key's hash or a token). The rules live in ``royalties/audit.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from royalties.db import BIGINT_PK, Base, UTCDateTime, utcnow


class OperatorAction(Base):
    __tablename__ = "operator_actions"
    __table_args__ = (
        CheckConstraint("actor_role IN ('admin','artist','storefront','fan','cli')", "actor_role"),
        # Someone acted: a key, a sign-in link's session, or the operator's command line.
        CheckConstraint(
            "actor_key_id IS NOT NULL OR actor_link_id IS NOT NULL OR actor_role = 'cli'",
            "actor_named",
        ),
        Index("ix_operator_actions_at", "at", "id"),
        Index("ix_operator_actions_action", "action", "at"),
        Index("ix_operator_actions_actor", "actor_key_id", "at"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_key_id: Mapped[str | None] = mapped_column(String(32))
    actor_link_id: Mapped[str | None] = mapped_column(String(32))
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_owner_id: Mapped[str | None] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
