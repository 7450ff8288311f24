"""The real worker mails fans: the outbox's fan-out queues the notice, the worker's mail
job sends it to the suite's SMTP server, and a fan who switched them off gets nothing."""

from __future__ import annotations

from tests.helpers import buy, share
from tests.smtp import body
from tests.web.conftest import _smtp, inbox
from tests.webhooks.conftest import wait_for, worker_process

__all__ = ["_smtp", "inbox"]


def test_the_worker_tells_a_fan_it_earned_a_reward_and_not_one_who_said_no(
    api, db_url, inbox, _smtp
):
    artist, shop = api.artist(), api.storefront()
    song = api.content(artist)
    ann = api.fan("ann", email="ann@fans.test")
    bob = api.fan("bob", email="bob@fans.test")
    api.ok("PATCH", f"/v1/fans/{bob.id}", bob, {"notifications": False}, 200)
    env = {"SMTP_URL": _smtp[0], "PUBLIC_BASE_URL": "http://royalties.test"}
    with worker_process(db_url, env) as worker:
        for fan in (bob, ann):
            code = share(api, fan, song["id"])
            buy(api, shop, song, {"email": f"buyer-of-{fan.id}@x.io"}, share_code=code)
        [message] = inbox.wait_for(1, timeout=30)
        wait_for(lambda: "fan_mail.send" in worker.output(), what="the mail job's line")
    assert message["To"] == "ann@fans.test"
    text = body(message)
    assert song["title"] in text
    assert f"http://royalties.test/dashboard/fans/{ann.id}" in text
    assert all(m["To"] != "bob@fans.test" for m in inbox.messages)
