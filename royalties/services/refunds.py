"""Refunds (SPEC section 5): full or partial, several per purchase, cumulatively exact.

The purchase row is locked for the whole refund, so concurrent refunds of one purchase
queue up and can never together exceed its amount (and a CHECK on
``refunded_amount <= amount`` backs that up). Each reward's reversal comes out of
``pending`` while it is on hold, else out of ``available`` (possibly below zero: a debt
that later rewards pay off before any payout).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from royalties import events, idempotency, ledger, rewards
from royalties.attribution import reverse
from royalties.db import utcnow
from royalties.errors import Forbidden, NotFound, RefundError
from royalties.ids import new_id
from royalties.ledger import AccountKind
from royalties.models import Purchase, Refund, Reward
from royalties.money import check_amount
from royalties.services._tx import unit_of_work

_FEE = "fee"


def refund_receipt(refund: Refund, purchase: Purchase) -> dict[str, Any]:
    return {
        "id": refund.id,
        "purchase_id": purchase.id,
        "amount": refund.amount,
        "currency": purchase.currency,
        "reversed": refund.reversed,
        "artist_reversed": refund.artist_reversed,
        "fee_reversed": refund.fee_reversed,
        "refunded_total": purchase.refunded_amount,
        "created_at": refund.created_at.isoformat(),
    }


def refund_purchase(
    session: Session,
    *,
    storefront_id: str,
    purchase_id: str,
    amount: int,
    claim: idempotency.Claim | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Refund ``amount`` of a purchase and reverse every share in proportion. Commits."""
    now = now or utcnow()
    with unit_of_work(session):
        purchase = session.get(Purchase, purchase_id, with_for_update=True, populate_existing=True)
        if purchase is None:
            raise NotFound(f"purchase {purchase_id} does not exist")
        if purchase.storefront_id != storefront_id:
            raise Forbidden("only the storefront that recorded a purchase may refund it")
        amount = check_amount(amount)
        left = purchase.amount - purchase.refunded_amount
        if amount > left:
            raise RefundError(
                f"only {left} of {purchase.amount} is left to refund",
                fields={"amount": [f"at most {left}"]},
            )
        lines_of_sale = list(
            session.scalars(
                select(Reward)
                .where(Reward.purchase_id == purchase.id)
                .order_by(Reward.level)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        parts: dict[str, int] = {r.id: r.amount for r in lines_of_sale}
        parts[_FEE] = purchase.fee
        rev = reverse(parts, purchase.amount, purchase.refunded_amount, amount)

        lines = [
            ledger.Line(AccountKind.STOREFRONT_RECEIVABLE, purchase.storefront_id, amount),
            ledger.Line(AccountKind.PLATFORM_FEES, ledger.PLATFORM, -rev.parts[_FEE]),
        ]
        artist_reversed, reversed_lines, reversed_ids = rev.artist, [], []
        for reward in lines_of_sale:
            taken = rev.parts[reward.id]
            account = rewards.refund_source(reward)
            if account is None:
                # A rejected reward's money already went back to the artist: it comes from there.
                artist_reversed += taken
                reversed_lines.append({"level": reward.level, "fan_id": reward.fan_id, "amount": 0})
                continue
            lines.append(ledger.Line(account, reward.fan_id, -taken, reward.id))
            reward.reversed_amount += taken
            if taken:
                reversed_ids.append(reward.id)
            reversed_lines.append({"level": reward.level, "fan_id": reward.fan_id, "amount": taken})
        lines.append(ledger.Line(AccountKind.ARTIST_EARNINGS, purchase.artist_id, -artist_reversed))
        refund = Refund(
            id=new_id("ref"),
            purchase_id=purchase.id,
            amount=amount,
            artist_reversed=artist_reversed,
            fee_reversed=rev.parts[_FEE],
            reversed=reversed_lines,
            created_at=now,
        )
        purchase.refunded_amount += amount
        session.add(refund)
        session.flush()
        ledger.post(session, kind="refund", ref=refund.id, currency=purchase.currency, lines=lines)
        body = refund_receipt(refund, purchase)
        events.record(
            session,
            "refund.recorded",
            body,
            events.Whose(purchase.storefront_id, purchase.artist_id),
            now=now,
        )
        rewards.emit(session, "reward.reversed", reversed_ids, now=now)
        if claim is not None:
            idempotency.complete(session, claim, body)
        return body
