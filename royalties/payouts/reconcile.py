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

from royalties.errors import PaymentDeclined, PaymentUncertain
from royalties.models import Payout
from royalties.payments.stripe import StripeGateway, TransferInfo
from royalties.payouts import machine


def settle_open(session: Session, gateway: StripeGateway) -> Iterator[tuple[bool, str]]:
    """Look at Stripe for the transfer of every open payout: settle those it has as
    paid, and yield ``(settled, sentence)`` for each, so what is left can be listed.
    Each settlement is committed before it is yielded."""
    for open_one in machine.open_payouts(session):
        payout = session.get(Payout, open_one.id)
        session.rollback()
        if payout is None or payout.state not in ("pending", "submitted"):
            continue
        try:
            found = gateway.find_transfer(
                destination=payout.destination,
                transfer_group=payout.run_id,
                payout_id=payout.id,
            )
        except (PaymentDeclined, PaymentUncertain) as exc:
            yield (
                False,
                f"payout {payout.id} is {payout.state}: could not ask Stripe ({exc.detail})",
            )
            continue
        if found is None:
            yield (
                False,
                f"payout {payout.id} ({payout.amount} {payout.currency}) is {payout.state} and "
                "Stripe has no transfer for it: the next payout run sends it",
            )
            continue
        outcome = machine.mark_paid(session, payout.id, found, detail="found by reconcile")
        if outcome.lost_race:  # settled by a run meanwhile: nothing written
            session.rollback()
            continue
        session.commit()
        yield True, f"payout {payout.id} settled as paid: Stripe has transfer {found.id}"


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
