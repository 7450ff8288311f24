"""Fan emails through the suite's SMTP server: rewards earned come as one digest an
hour, rewards available and payouts paid each reach the fan, a fan who switched them off
or has no address gets nothing, and a sender killed mid-send sends that one message
again and nothing else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from royalties.background import jobs
from royalties.db import utcnow
from royalties.models import FanNotice, Reward
from royalties.money import format_money
from royalties.notify.fans import send_fan_mail
from royalties.notify.mail import transport_for
from tests.helpers import buy, share
from tests.notify.conftest import BASE_URL, fan_out
from tests.smtp import body


@pytest.fixture
def sale(api: Any) -> dict[str, Any]:
    artist, shop = api.artist(), api.storefront()
    ann = api.fan("ann", email="ann@fans.test")
    song = api.content(artist)
    return {"shop": shop, "ann": ann, "song": song, "code": share(api, ann, song["id"])}


def sell(api: Any, sale: dict[str, Any], n: int = 1) -> None:
    for _ in range(n):
        buyer = {"email": f"buyer{utcnow().timestamp()}@buyers.test"}
        buy(api, sale["shop"], sale["song"], buyer, share_code=sale["code"])


def rewards_of(api: Any, fan: Any) -> list[dict[str, Any]]:
    return api.ok("GET", f"/v1/fans/{fan.id}/rewards", fan)["items"]  # type: ignore[no-any-return]


def queued(session: Any) -> int:
    n = session.scalar(select(func.count()).select_from(FanNotice))
    session.rollback()  # SQLite: release the write lock the read took
    return int(n)


def job(config: dict[str, Any], name: str) -> Any:
    return next(j for j in jobs(config) if j.name == name)


def test_rewards_earned_within_an_hour_come_as_one_digest(
    api, engine, session, sale, inbox, mail_config
):
    sell(api, sale, 3)
    earned = rewards_of(api, sale["ann"])
    t0 = utcnow()
    assert fan_out(session, t0) > 0
    assert send_fan_mail(engine, mail_config, t0) == 1
    [digest] = inbox.wait_for(1)
    text = body(digest)
    assert digest["To"] == "ann@fans.test"
    each = format_money(earned[0]["amount"], "USD")
    total = format_money(sum(r["amount"] for r in earned), "USD")
    assert digest["Subject"] == f"You earned 3 rewards: {total}"
    assert text.count(f'- {each} for "Song" (level 1: your own link)') == 3
    assert f"In all: {total}." in text
    page = f"{BASE_URL}/dashboard/fans/{sale['ann'].id}"
    assert page in text and f"{page}#notifications" in text and "switch them off" in text

    # one more within the hour waits for the hour to be up, then comes alone
    sell(api, sale)
    fan_out(session, t0 + timedelta(minutes=10))
    assert send_fan_mail(engine, mail_config, t0 + timedelta(minutes=10)) == 0
    assert send_fan_mail(engine, mail_config, t0 + timedelta(minutes=59)) == 0
    assert len(inbox.messages) == 1
    assert send_fan_mail(engine, mail_config, t0 + timedelta(minutes=61)) == 1
    second = inbox.wait_for(2)[1]
    assert second["Subject"] == f"You earned {each}"
    assert "You earned a reward from a sale you helped bring in" in body(second)
    assert send_fan_mail(engine, mail_config, t0 + timedelta(hours=3)) == 0  # sent once


def test_a_reward_that_becomes_available_is_emailed(api, engine, session, sale, inbox, mail_config):
    sell(api, sale)
    t0 = utcnow()
    fan_out(session, t0)
    assert send_fan_mail(engine, mail_config, t0) == 1  # the digest of the reward earned
    session.execute(update(Reward).values(available_at=t0 - timedelta(minutes=1)))
    session.commit()
    assert job(mail_config, "rewards.mature").run(engine, mail_config, t0) == 1
    fan_out(session, t0)
    assert send_fan_mail(engine, mail_config, t0) == 1
    message = inbox.wait_for(2)[1]
    [reward] = rewards_of(api, sale["ann"])
    amount = format_money(reward["amount"], "USD")
    assert message["Subject"] == f"{amount} is now available to be paid out"
    assert f'- {amount} for "Song" (level 1: your own link)' in body(message)
    assert "next payout run" in body(message)


def test_a_payout_paid_is_emailed(shop, papi, engine, session, inbox, mail_config, stripe_config):
    ann = papi.fan("ann", email="ann@fans.test")
    shop.connect(ann)
    shop.earn(ann, 3000)  # plan [5000], no hold: 15.00 USD available at once
    config = {**mail_config, **stripe_config, "PAYOUT_SCHEDULE": "* * * * *"}
    payouts = job(config, "payouts.scheduled")
    t0 = utcnow()
    assert payouts.run(engine, config, t0) == 0  # cron: due at the next minute, not at once
    assert payouts.run(engine, config, t0 + timedelta(seconds=61)) == 1
    fan_out(session, t0 + timedelta(seconds=61))
    assert send_fan_mail(engine, config, t0 + timedelta(seconds=61)) == 2
    subjects = {m["Subject"]: m for m in inbox.wait_for(2)}
    paid = subjects["You were paid 15.00 USD"]
    [transfer] = [t["id"] for t in shop.fake.transfers]
    assert f"We sent 15.00 USD to your Stripe account (transfer {transfer})." in body(paid)
    assert "You earned 15.00 USD" in subjects


def test_a_fan_who_switched_notifications_off_gets_nothing(
    api, engine, session, sale, inbox, mail_config
):
    answer = api.ok("PATCH", f"/v1/fans/{sale['ann'].id}", sale["ann"], {"notifications": False})
    assert answer["notifications"] is False
    sell(api, sale, 2)
    t0 = utcnow()
    fan_out(session, t0)
    assert queued(session) == 0
    assert send_fan_mail(engine, mail_config, t0) == 0
    assert inbox.messages == []


def test_switching_off_drops_what_was_already_queued(
    api, engine, session, sale, inbox, mail_config
):
    sell(api, sale)
    t0 = utcnow()
    fan_out(session, t0)
    api.ok("PATCH", f"/v1/fans/{sale['ann'].id}", api.admin, {"notifications": False})
    assert send_fan_mail(engine, mail_config, t0) == 0
    assert inbox.messages == []
    session.rollback()
    assert session.scalars(select(FanNotice.dropped)).all() == ["notifications off"]


def test_a_fan_without_an_email_address_gets_nothing(api, engine, session, inbox, mail_config):
    artist, shop = api.artist(), api.storefront()
    bea = api.fan("bea")
    song = api.content(artist)
    buy(api, shop, song, {"email": "b@buyers.test"}, share_code=share(api, bea, song["id"]))
    t0 = utcnow()
    fan_out(session, t0)
    assert queued(session) == 0
    assert send_fan_mail(engine, mail_config, t0) == 0
    assert inbox.messages == []


class Killed(BaseException):
    """The worker dies between handing a message to the server and marking it sent."""


def test_a_sender_killed_mid_send_sends_that_one_message_again(
    api, engine, session, inbox, mail_config
):
    artist, shop = api.artist(), api.storefront()
    song = api.content(artist)
    fans = [api.fan(f"f{i}", email=f"f{i}@fans.test") for i in range(3)]
    for i, fan in enumerate(fans):
        buy(api, shop, song, {"email": f"k{i}@buyers.test"}, share_code=share(api, fan, song["id"]))
    t0 = utcnow()
    fan_out(session, t0)
    smtp = transport_for(mail_config["SMTP_URL"])
    calls = []

    def dies_after_the_second(message: Any) -> None:
        smtp(message)
        calls.append(message["To"])
        if len(calls) == 2:
            raise Killed

    with pytest.raises(Killed):
        send_fan_mail(engine, mail_config, t0, transport=dies_after_the_second)
    # the leased message waits for its lease; the untouched one goes now
    assert send_fan_mail(engine, mail_config, t0 + timedelta(seconds=1)) == 1
    assert send_fan_mail(engine, mail_config, t0 + timedelta(minutes=6)) == 1
    received = [m["To"] for m in inbox.wait_for(4)]
    assert sorted(received) == sorted([*(f"f{i}@fans.test" for i in range(3)), calls[1]])
    assert send_fan_mail(engine, mail_config, t0 + timedelta(hours=2)) == 0
