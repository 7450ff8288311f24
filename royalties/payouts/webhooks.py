"""Stripe's webhook events about payouts: an account's state, a transfer's reversal.

An event is acted on once (its id is recorded in the same transaction as its effect),
and only says *which* object changed: events arrive more than once and out of order,
so the object's current state is fetched from Stripe before any transaction opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties.db import insert_or_ignore, utcnow
from royalties.models import Fan, Payout, WebhookEvent
from royalties.payments.stripe import AccountInfo, StripeGateway, TransferInfo
from royalties.payouts import machine
from royalties.payouts.onboarding import store_account
from royalties.services._tx import unit_of_work


def handle_webhook(
    session: Session, event: dict[str, Any], gateway: Callable[[], StripeGateway]
) -> str:
    """Act on a verified Stripe event once; a replay of the same event id changes nothing.

    Events arrive more than once and out of order, so an event only says *which* object
    changed: its current state is fetched from Stripe (``gateway`` is called only then),
    before any transaction opens, so no lock is held across the call. A fetch that fails
    raises before anything is written, the event id included, so Stripe's redelivery is
    handled in full."""
    obj = (event.get("data") or {}).get("object") or {}
    kind = event.get("type")
    object_id = str(obj.get("id"))
    account: AccountInfo | None = None
    transfer: TransferInfo | None = None
    if kind == "account.updated":
        fan_id = session.scalar(select(Fan.id).where(Fan.stripe_account_id == object_id))
        session.rollback()
        account = gateway().retrieve_account(object_id) if fan_id else None
    elif kind in ("transfer.reversed", "transfer.updated"):
        known = session.scalar(select(Payout.id).where(Payout.stripe_transfer_id == object_id))
        session.rollback()
        transfer = gateway().retrieve_transfer(object_id) if known else None
    with unit_of_work(session):
        first = session.execute(
            insert_or_ignore(session, WebhookEvent)
            .values(id=str(event["id"]), type=str(event.get("type", "")), received_at=utcnow())
            .returning(WebhookEvent.id)
        ).scalar()
        if first is None:
            return "duplicate"
        if kind == "account.updated":
            fan = session.scalar(select(Fan).where(Fan.stripe_account_id == object_id))
            if fan is None or account is None:
                return "ignored: unknown account"
            store_account(fan, account)
            return "account updated"
        if kind in ("transfer.reversed", "transfer.updated"):
            if transfer is None:
                return "ignored: unknown transfer"
            machine.apply_reversal(session, object_id, transfer.amount_reversed)
            return "transfer reversal applied"
        return "ignored"
