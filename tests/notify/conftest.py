"""Fan mail fixtures: the suite's SMTP server, the fake Stripe, and the fan-out's step
that hands newly written events to the mail queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties.models import Event
from royalties.notify.fans import queue
from tests.payouts.conftest import fake_stripe, papi, shop, stripe_config
from tests.smtp import Inbox
from tests.web.conftest import _smtp, inbox

__all__ = ["_smtp", "fake_stripe", "inbox", "papi", "shop", "stripe_config"]

BASE_URL = "http://royalties.test"


@pytest.fixture
def mail_config(_smtp: tuple[str, Inbox]) -> dict[str, Any]:
    return {
        "SMTP_URL": _smtp[0],
        "MAIL_FROM": "Fan royalties <no-reply@royalties.test>",
        "PUBLIC_BASE_URL": BASE_URL,
    }


def fan_out(session: Session, now: datetime) -> int:
    """What the outbox's fan-out does for the mail queue: every event not fanned out yet
    goes to ``queue`` in one transaction that also marks it fanned out."""
    events = list(
        session.scalars(select(Event).where(Event.fanned_out.is_(False)).order_by(Event.seq))
    )
    queue(session, events, now)
    for event in events:
        event.fanned_out = True
    session.commit()
    return len(events)
