"""Fan notifications: emails about rewards earned, rewards available and payouts paid,
fed by the outbox and sent by the worker.

The rules, in plain words:

- **What is sent.** A ``reward.created`` event tells the fan it earned a reward; a
  ``reward.available`` one that a reward can now be paid out; a ``payout.paid`` one that
  money reached its Stripe account. Only fans with an email address and notifications
  on (``fans.notify_email``) are told; the fan switches them off from its page, and
  every email says how.
- **Queued with the event.** :func:`queue` is a fan-out consumer: it writes one
  ``fan_notices`` row per event in the fan-out's own transaction, so an event is queued
  for its fan exactly when it is fanned out, never twice (``event_id`` is unique).
- **Earned rewards come as a digest, at most one an hour.** The first reward is sent at
  once; rewards earned within the hour after a digest wait until the hour is up and go
  out together in the next one. Rewards available and payouts paid are sent when due,
  each kind in its own message (several of one kind that are due together share it).
- **Sent at least once, at most twice.** :func:`send_fan_mail` takes one message at a
  time: it leases the message's rows (``claimed_until``) and commits, sends, then marks
  them sent and commits. A sender killed between sending and marking leaves the lease to
  run out, and that one message is sent again; nothing else is. On PostgreSQL rows are
  claimed with ``FOR UPDATE SKIP LOCKED`` and one fan's messages under an advisory
  lock, so several workers share the queue and never both send one fan's digest.
- A fan who switched notifications off (or lost its address) after a row was queued is
  not mailed: the row is marked ``dropped`` when its turn comes. A message the SMTP
  server refuses is tried again later, up to ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties.db import advisory_lock, insert_or_ignore, make_sessionmaker, table
from royalties.models import Content, Event, Fan, FanNotice
from royalties.models.notices import NOTICE_KINDS
from royalties.money import format_money
from royalties.notify.mail import Transport, compose, transport_for
from royalties.services._tx import unit_of_work

log = logging.getLogger("royalties.notify")

DIGEST_EVERY = timedelta(hours=1)
LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
MESSAGES_PER_ROUND = 100


# -- queueing (inside the fan-out's transaction) ---------------------------------------


def queue(session: Session, events: Sequence[Event], now: datetime) -> None:
    """Queue a notice for every event in ``events`` a fan is to be told about (a
    ``FanOutConsumer``). Does not commit: the fan-out's transaction does."""
    wanted = [e for e in events if e.type in NOTICE_KINDS and e.fan_id]
    if not wanted:
        return
    reachable = set(
        session.scalars(
            select(Fan.id).where(
                Fan.id.in_(sorted({str(e.fan_id) for e in wanted})),
                Fan.email.is_not(None),
                Fan.notify_email.is_(True),
            )
        )
    )
    rows = [
        {
            "fan_id": event.fan_id,
            "kind": event.type,
            "event_id": event.id,
            "details": json.loads(event.body)["data"],
            "created_at": now,
            "due_at": now,
            "attempts": 0,
        }
        for event in wanted
        if event.fan_id in reachable
    ]
    if rows:
        session.execute(insert_or_ignore(session, table(FanNotice)), rows)


# -- sending (the worker's job) --------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    ids: list[int]
    lease: datetime
    message: EmailMessage


def send_fan_mail(
    engine: Engine,
    config: Mapping[str, Any],
    now: datetime,
    *,
    transport: Transport | None = None,
) -> int:
    """One round of the fan mail queue: send every message due at ``now`` (up to
    ``MESSAGES_PER_ROUND``) through ``SMTP_URL`` (or the log), one commit before and one
    after each. Returns how many messages were sent."""
    send = transport or transport_for(config.get("SMTP_URL"))
    sent = 0
    with make_sessionmaker(engine)() as session:
        for _ in range(MESSAGES_PER_ROUND):
            claim = _claim(session, config, now)
            if claim is None:
                break
            if not claim.ids:
                continue  # deferred to the next digest, or dropped
            try:
                send(claim.message)
            except Exception as exc:
                _failed(session, claim, now, f"{type(exc).__name__}: {exc}")
                log.warning("could not mail %s: %s", claim.message["To"], type(exc).__name__)
                continue
            _mark_sent(session, claim, now)
            sent += 1
    return sent


def _claimable(now: datetime) -> Any:
    return (
        FanNotice.sent_at.is_(None),
        FanNotice.dropped.is_(None),
        FanNotice.due_at <= now,
        or_(FanNotice.claimed_until.is_(None), FanNotice.claimed_until < now),
    )


_EMPTY = _Claim([], datetime.min, EmailMessage())


def _claim(session: Session, config: Mapping[str, Any], now: datetime) -> _Claim | None:
    """Lease the next message's rows and commit: None when nothing is due; an empty
    claim when the due rows were deferred or dropped instead."""
    postgres = session.get_bind().dialect.name == "postgresql"
    with unit_of_work(session):
        first = select(FanNotice.fan_id, FanNotice.kind).where(*_claimable(now))
        first = first.order_by(FanNotice.due_at, FanNotice.id).limit(1)
        if postgres:
            first = first.with_for_update(skip_locked=True)
        head = session.execute(first).first()
        if head is None:
            return None
        fan_id, kind = head
        # One sender at a time per fan: a digest and its successor are an hour apart.
        advisory_lock(session.connection(), "fan-mail", fan_id)
        rows_query = select(FanNotice).where(
            FanNotice.fan_id == fan_id, FanNotice.kind == kind, *_claimable(now)
        )
        if postgres:
            rows_query = rows_query.with_for_update(skip_locked=True)
        rows = list(session.scalars(rows_query.order_by(FanNotice.id)))
        if not rows:
            return _EMPTY
        ids = [row.id for row in rows]
        fan = session.get(Fan, fan_id)
        if fan is None or not fan.email or not fan.notify_email:
            why = "notifications off" if fan is not None and fan.email else "no email address"
            _set(session, ids, dropped=why)
            return _EMPTY
        if kind == "reward.created":
            last = _last_digest(session, fan_id, now)
            if last is not None and now < last + DIGEST_EVERY:
                _set(session, ids, due_at=last + DIGEST_EVERY)
                return _EMPTY
        lease = now + LEASE
        _set(session, ids, claimed_until=lease, attempts=FanNotice.attempts + 1)
        message = _message(session, config, fan, kind, [row.details for row in rows])
    return _Claim(ids, lease, message)


def _last_digest(session: Session, fan_id: str, now: datetime) -> datetime | None:
    """When the fan's last digest went out; ``now`` while one is being sent."""
    mine = (FanNotice.fan_id == fan_id, FanNotice.kind == "reward.created")
    sending = session.scalar(
        select(FanNotice.id)
        .where(*mine, FanNotice.sent_at.is_(None), FanNotice.claimed_until >= now)
        .limit(1)
    )
    if sending is not None:
        return now
    last: datetime | None = session.scalar(select(func.max(FanNotice.sent_at)).where(*mine))
    return last


def _set(session: Session, ids: list[int], **values: Any) -> None:
    session.execute(
        update(FanNotice)
        .where(FanNotice.id.in_(ids))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _mark_sent(session: Session, claim: _Claim, now: datetime) -> None:
    # Only under our lease: a sender that outlived it leaves the rows to their new holder.
    with unit_of_work(session):
        session.execute(
            update(FanNotice)
            .where(FanNotice.id.in_(claim.ids), FanNotice.claimed_until == claim.lease)
            .values(sent_at=now, last_error=None)
            .execution_options(synchronize_session=False)
        )


def _failed(session: Session, claim: _Claim, now: datetime, error: str) -> None:
    """The server refused: try again later (a little later each time), or give up."""
    with unit_of_work(session):
        rows = session.execute(
            select(FanNotice.id, FanNotice.attempts).where(
                FanNotice.id.in_(claim.ids), FanNotice.claimed_until == claim.lease
            )
        ).all()
        for row_id, attempts in rows:
            values: dict[str, Any] = {"claimed_until": None, "last_error": error[:500]}
            if attempts >= MAX_ATTEMPTS:
                values["dropped"] = f"gave up after {attempts} attempts"
            else:
                values["due_at"] = now + timedelta(minutes=5 * attempts)
            _set(session, [row_id], **values)


# -- the messages ----------------------------------------------------------------------


def fan_page_url(config: Mapping[str, Any], fan_id: str) -> str:
    """The fan's dashboard page, written with ``PUBLIC_BASE_URL``."""
    return f"{str(config['PUBLIC_BASE_URL']).rstrip('/')}/dashboard/fans/{fan_id}"


def _message(
    session: Session,
    config: Mapping[str, Any],
    fan: Fan,
    kind: str,
    items: list[dict[str, Any]],
) -> EmailMessage:
    subject, lines = _WRITERS[kind](session, items)
    page = fan_page_url(config, fan.id)
    body = (
        f"Hello {fan.handle},\n\n"
        + "\n".join(lines)
        + f"\n\nYour page, with your balance and every reward:\n{page}\n\n"
        "You get these emails because notifications are on for your fan account. To "
        'switch them off, open your page and choose "Off" under "Email notifications":\n'
        f"{page}#notifications\n"
    )
    assert fan.email is not None
    return compose(sender=str(config["MAIL_FROM"]), to=fan.email, subject=subject, body=body)


def _total(items: list[dict[str, Any]], field: str = "amount") -> str:
    by_currency: dict[str, int] = defaultdict(int)
    for item in items:
        by_currency[item["currency"]] += int(item[field]) - int(item.get("reversed_amount") or 0)
    return " and ".join(format_money(n, cur) for cur, n in sorted(by_currency.items()))


def _titles(session: Session, items: list[dict[str, Any]]) -> dict[str, str]:
    ids = sorted({str(item["content_id"]) for item in items})
    return dict(session.execute(select(Content.id, Content.title).where(Content.id.in_(ids))).all())


def _reward_line(item: dict[str, Any], titles: dict[str, str], *, earned: bool) -> str:
    amount = format_money(int(item["amount"]) - int(item["reversed_amount"]), item["currency"])
    title = titles.get(item["content_id"], "a sale")
    level = "level 1: your own link" if item["level"] == 1 else f"level {item['level']}"
    line = f'- {amount} for "{title}" ({level})'
    if earned and item["state"] == "held":
        line += ", held for review"
    elif earned and item["state"] == "pending" and item.get("available_at"):
        line += f", available from {str(item['available_at'])[:10]}"
    return line


def _earned(session: Session, items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    titles = _titles(session, items)
    if len(items) == 1:
        subject = f"You earned {_total(items)}"
        intro = "You earned a reward from a sale you helped bring in:"
    else:
        subject = f"You earned {len(items)} rewards: {_total(items)}"
        intro = f"You earned {len(items)} rewards from sales you helped bring in:"
    lines = [intro, "", *(_reward_line(i, titles, earned=True) for i in items)]
    if len(items) > 1:
        lines += ["", f"In all: {_total(items)}."]
    return subject, lines


def _available(session: Session, items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    titles = _titles(session, items)
    subject = f"{_total(items)} is now available to be paid out"
    lines = [
        "These rewards are now available:",
        "",
        *(_reward_line(i, titles, earned=False) for i in items),
        "",
        "Available money is paid to your Stripe account in the next payout run, once your "
        "available balance reaches the minimum and payouts are set up.",
    ]
    return subject, lines


def _paid(_session: Session, items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    lines = []
    for item in items:
        amount = format_money(int(item["amount"]), item["currency"])
        transfer = item.get("stripe_transfer_id")
        lines.append(
            f"We sent {amount} to your Stripe account"
            + (f" (transfer {transfer})." if transfer else ".")
        )
    lines += ["", "Stripe pays it out to your bank account on your account's schedule."]
    return f"You were paid {_total(items)}", lines


_WRITERS = {"reward.created": _earned, "reward.available": _available, "payout.paid": _paid}
