"""Reconciliation: the ledger's payouts against the transfers Stripe has.

Open payouts are settled from what Stripe has (a look, as a run does before a retry);
then Stripe's transfers in a window are compared with the ledger's paid payouts, and
every disagreement is said in a sentence. Nothing here sends money.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from royalties.db import utcnow
from royalties.errors import PaymentDeclined
from royalties.models import Payout
from royalties.payments.stripe import StripeGateway, TransferInfo
from royalties.payouts import machine


def settle_open(session: Session, gateway: StripeGateway) -> Iterator[tuple[bool, str]]:
    """Look at Stripe for the transfer of every open payout, with the look a run makes
    before a retry: settle those it has as paid, and yield ``(settled, sentence)`` for
    each, so what is left can be listed. Each outcome is committed before it is yielded;
    no transaction is open across a call to Stripe."""
    open_ones = machine.open_payouts(session)
    session.rollback()
    for open_one in open_ones:
        retry = machine.open_attempt(session, open_one.id, now=utcnow())
        session.rollback()
        if isinstance(retry, machine.Outcome):  # settled by a run since it was listed
            continue
        outcome = machine.settle_if_found(session, gateway, retry)
        if outcome is None:
            yield (
                False,
                f"payout {open_one.id} ({open_one.amount} {open_one.currency}) is "
                f"{retry.state} and Stripe has no transfer for it: the next payout run sends it",
            )
            continue
        if outcome.lost_race:  # settled by a run meanwhile: nothing written
            session.rollback()
            continue
        session.commit()
        if outcome.state == "paid":
            yield True, f"payout {open_one.id} settled as paid: {outcome.detail}"
        else:
            yield False, f"payout {open_one.id} is {retry.state}: {outcome.detail}"


def reconcile(
    session: Session, gateway: StripeGateway, *, since: datetime, until: datetime
) -> Iterator[str]:
    """Compare Stripe's transfers created in [since, until) with the ledger's payouts;
    yields one sentence per mismatch. Only reads."""
    transfers = {
        t.id: t
        for t in gateway.list_transfers(
            created_gte=int(since.timestamp()), created_lt=int(until.timestamp())
        )
    }
    paid = list(
        session.scalars(
            select(Payout).where(
                or_(
                    Payout.stripe_transfer_id.in_(list(transfers) or [""]),
                    and_(
                        Payout.state == "paid",
                        Payout.updated_at >= since,
                        Payout.updated_at < until,
                    ),
                )
            )
        )
    )
    by_transfer = {p.stripe_transfer_id: p for p in paid if p.stripe_transfer_id}
    for tid, t in sorted(transfers.items()):
        payout = by_transfer.get(tid)
        if payout is None:
            claimed = t.metadata.get("payout_id", "?")
            yield (
                f"Stripe transfer {tid} ({t.amount} {t.currency}, payout {claimed}) "
                "has no paid payout in the ledger"
            )
            continue
        yield from _differences(t, payout)
    for payout in paid:
        if payout.state != "paid" or payout.stripe_transfer_id in transfers:
            continue
        # Not in the window's list: Stripe stamps whole seconds, and a transfer made by an
        # earlier attempt (a crashed run) predates the run that marked it paid. Ask for it.
        try:
            found = gateway.retrieve_transfer(str(payout.stripe_transfer_id))
        except PaymentDeclined:
            yield (
                f"payout {payout.id} is paid in the ledger but Stripe has "
                f"no transfer {payout.stripe_transfer_id}"
            )
            continue
        yield from _differences(found, payout)


def _differences(t: TransferInfo, payout: Payout) -> Iterator[str]:
    """How a Stripe transfer and the payout it settled disagree, if they do."""
    if (t.amount, t.currency, t.destination) != (
        payout.amount,
        payout.currency,
        payout.destination,
    ):
        yield (
            f"transfer {t.id} is {t.amount} {t.currency} to {t.destination} but payout "
            f"{payout.id} says {payout.amount} {payout.currency} to {payout.destination}"
        )
    if t.amount_reversed != payout.reversed_amount:
        yield (
            f"transfer {t.id} has {t.amount_reversed} reversed at Stripe, "
            f"the ledger {payout.reversed_amount}"
        )
