"""Fan mail fixtures: the suite's SMTP server, the fake Stripe, and the worker's fan-out
(which hands newly written events to the mail queue)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session

from royalties.webhooks import fan_out as fan_out_events
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
    """The worker's fan-out (``royalties.webhooks.fan_out``), which hands every new event
    to the mail queue, run at ``now``; ``session``'s transaction ends first (on SQLite
    it would hold the write lock)."""
    session.rollback()
    return fan_out_events(session.get_bind(), {}, now)  # type: ignore[arg-type]
