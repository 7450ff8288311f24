"""A held reward is skipped by payout runs, paid after approval, reversed after rejection."""

from __future__ import annotations

from tests.helpers import ledger_is_sound, new_key, refund, share


def held_sale(shop, fan, buyer_email):
    code = share(shop.api, fan, shop.item["id"])
    return shop.api.ok(
        "POST",
        "/v1/purchases",
        shop.storefront,
        {
            "content_id": shop.item["id"],
            "amount": 3000,
            "currency": "USD",
            "buyer": {"email": buyer_email},
            "share_code": code,
        },
        201,
        headers={"Idempotency-Key": new_key()},
    )


def test_a_held_reward_is_skipped_by_payouts_and_paid_after_approval(shop):
    fan = shop.api.fan(email="lee@example.com")
    held_sale(shop, fan, "lee+alt@example.com")  # reward 1500, held
    shop.connect(fan)
    assert shop.balance(fan) == (1500, 0, 0)  # hold_days 0, yet pending: held
    assert shop.run()["payouts"] == []
    queue = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"]
    shop.api.ok(
        "POST",
        f"/v1/review/{queue[0]['reward_id']}",
        shop.api.admin,
        {"decision": "approve", "reason": "verified"},
    )
    assert shop.balance(fan) == (0, 1500, 0)
    assert [p["amount"] for p in shop.run()["payouts"]] == [1500]
    ledger_is_sound(shop.api.session)


def test_a_rejected_reward_goes_back_to_the_artist_and_a_later_refund_stays_exact(shop):
    fan = shop.api.fan(email="max@example.com")
    sale = held_sale(shop, fan, "max+alt@example.com")
    shop.connect(fan)
    reward_id = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"][0]["reward_id"]
    shop.api.ok(
        "POST",
        f"/v1/review/{reward_id}",
        shop.api.admin,
        {"decision": "reject", "reason": "second account"},
    )
    assert shop.balance(fan) == (0, 0, 0)
    assert shop.run()["payouts"] == []
    rewards = shop.api.ok("GET", f"/v1/fans/{fan.id}/rewards", fan)["items"]
    assert [r["state"] for r in rewards] == ["rejected"]
    back = refund(shop.api, shop.storefront, sale["id"], 3000)
    assert back["artist_reversed"] == 3000  # the artist held the rejected share
    assert shop.balance(fan) == (0, 0, 0)
    ledger_is_sound(shop.api.session)


def test_the_fan_page_counts_a_rejected_reward_as_nothing_as_the_ledger_does(shop):
    """Issue 12's bug: after a rejection the ledger showed 0 and insights 0, but the fan
    page's "Earnings by level" and "Earnings by content" still showed the reward."""
    import re

    from tests.web.conftest import Browser

    fan = shop.api.fan(email="ivy@example.com")
    held_sale(shop, fan, "ivy+alt@example.com")  # reward 1500, held
    browser = Browser(shop.api.client.application)
    browser.sign_in(fan.key)

    def figures() -> tuple[str, str]:
        html = browser.get(f"/dashboard/fans/{fan.id}").get_data(as_text=True)
        level = html[html.index('id="earnings-by-level"') :].split("</table>")[0]
        content = html[html.index('id="earnings-by-content"') :].split("</table>")[0]
        return re.sub(r"\s+", " ", level), re.sub(r"\s+", " ", content)

    level, content = figures()
    assert "15.00 USD" in level and "15.00 USD" in content  # held: earned, not yet decided
    reward_id = shop.api.ok("GET", "/v1/review", shop.api.admin)["items"][0]["reward_id"]
    shop.api.ok(
        "POST",
        f"/v1/review/{reward_id}",
        shop.api.admin,
        {"decision": "reject", "reason": "second account"},
    )
    shop.api.session.rollback()
    level, content = figures()
    assert "15.00 USD" not in level and "15.00 USD" not in content
    assert "0.00 USD" in level and "0.00 USD" in content
    assert shop.balance(fan) == (0, 0, 0)
