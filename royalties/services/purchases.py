"""Recording a sale (SPEC sections 3 and 4): who the buyer is, who brought them, who
earns what, and the ledger transaction that books it. One database transaction.

The influence chain is resolved here and stored on the purchase; the arithmetic is
``royalties.attribution``'s; the money moves only through ``royalties.ledger.post``.
Hot-path cost: a handful of indexed reads (content, plan, link, buyer, upline) and
bulk Core inserts; no graph walk, no cached balance to lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from royalties import fraud, graph, idempotency, ledger
from royalties.attribution import RewardLine, influence_chain, split_sale
from royalties.db import utcnow
from royalties.errors import NotFound, ValidationFailed
from royalties.ids import new_id, random_token
from royalties.models import Content, Fan, Purchase, Reward, ShareLink
from royalties.money import check_amount, normalize_currency
from royalties.plans import effective_plan
from royalties.services import review
from royalties.services._tx import unit_of_work


@dataclass(frozen=True)
class BuyerRef:
    """How the storefront names the buyer: exactly one of the three."""

    fan_id: str | None = None
    email: str | None = None
    external_id: str | None = None


def receipt(purchase: Purchase, rewards: list[dict[str, Any]]) -> dict[str, Any]:
    """The purchase as the API returns it (and as an idempotent replay returns it again)."""
    return {
        "id": purchase.id,
        "content_id": purchase.content_id,
        "storefront_id": purchase.storefront_id,
        "buyer_id": purchase.buyer_id,
        "amount": purchase.amount,
        "currency": purchase.currency,
        "artist_share": purchase.artist_share,
        "fee": purchase.fee,
        "plan_version": purchase.plan_version,
        "share_code": purchase.share_code,
        "refunded_amount": purchase.refunded_amount,
        "rewards": rewards,
        "created_at": purchase.created_at.isoformat(),
    }


def record_purchase(
    session: Session,
    *,
    storefront_id: str,
    content_id: str,
    amount: int,
    currency: str,
    buyer: BuyerRef,
    share_code: str | None = None,
    fee_bps: int = 0,
    client_ip_hash: str | None = None,
    claim: idempotency.Claim | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Attribute, split and book one sale; returns its receipt. Commits."""
    now = now or utcnow()
    with unit_of_work(session):
        content = session.get(Content, content_id)
        if content is None:
            raise NotFound(f"content {content_id} does not exist")
        amount = check_amount(amount)
        if normalize_currency(currency) != content.currency:
            raise ValidationFailed(
                f"this content is sold in {content.currency}",
                fields={"currency": [f"must be {content.currency}, the content's currency"]},
            )
        plan = effective_plan(session, artist_id=content.artist_id, content_id=content.id)
        link_owner = _link_owner(session, share_code, content.artist_id)
        buyer_fan = _find_or_enroll_buyer(session, buyer, storefront_id, link_owner)
        if link_owner == buyer_fan.id:
            link_owner = None  # self-referral: ignored, level 1 falls back to the sponsor
        level1 = link_owner or buyer_fan.sponsor_id
        levels = len(plan.level_rates_bps)
        chain = influence_chain(
            level1, graph.upline(session, level1, levels - 1) if level1 else [], levels
        )
        split = split_sale(amount, plan.level_rates_bps, chain, buyer_fan.id, fee_bps)

        purchase = Purchase(
            id=new_id("pur"),
            storefront_id=storefront_id,
            content_id=content.id,
            artist_id=content.artist_id,
            buyer_id=buyer_fan.id,
            amount=amount,
            currency=content.currency,
            artist_share=split.artist_share,
            fee=split.fee,
            plan_id=plan.id,
            plan_version=plan.version,
            share_code=share_code,
            chain=chain,
            refunded_amount=0,
            client_ip_hash=client_ip_hash,
            created_at=now,
        )
        session.add(purchase)
        session.flush()

        reward_ids = [new_id("rwd") for _ in split.rewards]
        held = _held_rewards(
            session,
            split.rewards,
            reward_ids,
            buyer_fan,
            level1,
            link_owner,
            share_code,
            client_ip_hash,
        )
        on_hold = "pending" if plan.hold_days else "available"
        rewards = [
            {
                "id": reward_id,
                "purchase_id": purchase.id,
                "level": line.level,
                "fan_id": line.fan_id,
                "amount": line.amount,
                "currency": content.currency,
                "reversed_amount": 0,
                # A held reward waits in pending whatever the plan's hold: it must not be paid.
                "state": "pending" if reward_id in held else on_hold,
                "review_state": "held" if reward_id in held else None,
                "available_at": now + timedelta(days=plan.hold_days),
                "created_at": now,
            }
            for line, reward_id in zip(split.rewards, reward_ids, strict=True)
        ]
        if rewards:
            session.execute(insert(Reward), rewards)
        ledger.post(
            session,
            kind="purchase",
            ref=purchase.id,
            currency=content.currency,
            lines=[
                ledger.Line("storefront_receivable", storefront_id, -amount),
                ledger.Line("artist_earnings", content.artist_id, split.artist_share),
                ledger.Line("platform_fees", ledger.PLATFORM, split.fee),
                *(
                    ledger.Line(
                        "fan_pending"
                        if reward_id in held or on_hold == "pending"
                        else "fan_available",
                        line.fan_id,
                        line.amount,
                        reward_id,
                    )
                    for line, reward_id in zip(split.rewards, reward_ids, strict=True)
                ),
            ],
        )
        body = receipt(
            purchase,
            [{"level": r.level, "fan_id": r.fan_id, "amount": r.amount} for r in split.rewards],
        )
        if claim is not None:
            idempotency.complete(session, claim, 201, body)
        return body


def _held_rewards(
    session: Session,
    lines: Sequence[RewardLine],
    reward_ids: Sequence[str],
    buyer: Fan,
    level1: str | None,
    link_owner: str | None,
    share_code: str | None,
    client_ip_hash: str | None,
) -> set[str]:
    """Reward ids to hold for review, with the signals that hold them recorded.

    The level-1 reward is held when buyer and level-1 fan look like one person; any
    reward is held while its fan (or, for level 1, the link used) carries a signal."""
    if not lines:
        return set()
    held: set[str] = set()
    by_fan = {line.fan_id: rid for line, rid in zip(lines, reward_ids, strict=True)}
    if level1 is not None and level1 in by_fan:
        fan = session.get(Fan, level1)
        assert fan is not None
        findings = fraud.second_account(
            buyer_email=buyer.email,
            fan_email=fan.email,
            purchase_address=client_ip_hash,
            fan_signup_address=fan.signup_ip_hash,
        )
        if findings:
            review.record(session, findings, subject_type="reward", subject_id=by_fan[level1])
            held.add(by_fan[level1])
    code = share_code if link_owner is not None else None
    flagged = review.flagged(session, fan_ids=by_fan, code=code)
    held |= {rid for fan_id, rid in by_fan.items() if fan_id in flagged}
    if code in flagged and link_owner in by_fan:
        held.add(by_fan[link_owner])
    return held


def _link_owner(session: Session, code: str | None, artist_id: str) -> str | None:
    """The owner of ``code`` if it is active and for content of ``artist_id``."""
    if not code:
        return None
    return session.scalar(
        select(ShareLink.fan_id).where(
            ShareLink.code == code, ShareLink.active.is_(True), ShareLink.artist_id == artist_id
        )
    )


def _find_or_enroll_buyer(
    session: Session, ref: BuyerRef, storefront_id: str, link_owner: str | None
) -> Fan:
    if ref.fan_id is not None:
        fan = session.get(Fan, ref.fan_id)
        if fan is None:
            raise ValidationFailed(
                "the buyer's fan_id names no fan", fields={"buyer": {"fan_id": ["unknown fan"]}}
            )
    elif ref.email is not None:
        fan = session.scalar(select(Fan).where(Fan.email == graph.normalize_email(ref.email)))
    elif ref.external_id is not None:
        fan = session.scalar(
            select(Fan).where(
                Fan.storefront_id == storefront_id, Fan.external_id == ref.external_id
            )
        )
    else:
        raise ValidationFailed(
            "name the buyer", fields={"buyer": ["give fan_id, email or external_id"]}
        )

    if fan is None:  # a new buyer joins the graph under whoever brought them
        return graph.create_fan(
            session,
            handle=f"buyer-{random_token(12)}",
            email=ref.email,
            sponsor_id=link_owner,
            storefront_id=storefront_id if ref.external_id is not None else None,
            external_id=ref.external_id,
        )
    if link_owner is not None and fan.sponsor_id is None and link_owner != fan.id:
        graph.assign_sponsor(session, fan.id, link_owner, strict=False)
    return fan


def get_purchase(
    session: Session, purchase_id: str, *, storefront_id: str | None
) -> dict[str, Any]:
    """A purchase's receipt; ``storefront_id`` limits it to the storefront that recorded it."""
    purchase = session.get(Purchase, purchase_id)
    if purchase is None or (storefront_id is not None and purchase.storefront_id != storefront_id):
        raise NotFound(f"purchase {purchase_id} does not exist")
    rewards = session.scalars(
        select(Reward).where(Reward.purchase_id == purchase.id).order_by(Reward.level)
    )
    return receipt(
        purchase, [{"level": r.level, "fan_id": r.fan_id, "amount": r.amount} for r in rewards]
    )
