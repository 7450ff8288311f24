"""Each fraud signal is raised by the scenario that should raise it, and not by a
similar honest one; held rewards are listed for review and decided once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from royalties.db import utcnow
from royalties.fraud.detectors import FraudConfig
from royalties.fraud.signals import scan
from royalties.models import FraudSignal, ReviewDecision, Reward
from tests.conftest import create_test_app
from tests.helpers import ApiDriver, buy, new_key, share

CONFIG = FraudConfig(signup_min=4, signup_share_pct=75, click_min=5, burst_min=3, burst_minutes=10)


@pytest.fixture
def fapi(engine, db_url, session):
    app = create_test_app(engine, db_url, FRAUD=CONFIG)
    return ApiDriver(app.test_client(), session)


@pytest.fixture
def world(fapi):
    artist, shop = fapi.artist(), fapi.storefront()
    return shop, fapi.content(artist)


def reward_of(api, sale, level=1):
    api.session.rollback()
    return api.session.scalars(
        select(Reward).where(Reward.purchase_id == sale["id"], Reward.level == level)
    ).one()


def signals(api, subject_id):
    api.session.rollback()
    kinds = [
        s.kind
        for s in api.session.scalars(
            select(FraudSignal).where(FraudSignal.subject_id == subject_id)
        )
    ]
    api.session.rollback()  # release SQLite's lock before the next request
    return kinds


def buy_from(api, shop, item, buyer, code, ip=None):
    payload = {
        "content_id": item["id"],
        "amount": 1999,
        "currency": "USD",
        "buyer": buyer,
        "share_code": code,
    }
    if ip:
        payload["client_ip"] = ip
    return api.ok(
        "POST", "/v1/purchases", shop, payload, 201, headers={"Idempotency-Key": new_key()}
    )


def test_a_buyer_with_the_level_one_fans_mailbox_holds_the_reward(fapi, world):
    shop, item = world
    fan = fapi.fan(email="ann.smith@gmail.com")
    sale = buy_from(
        fapi, shop, item, {"email": "annsmith+deals@googlemail.com"}, share(fapi, fan, item["id"])
    )
    reward = reward_of(fapi, sale)
    assert reward.review_state == "held" and reward.state == "pending"
    assert signals(fapi, reward.id) == ["shared_email"]


def test_a_different_mailbox_is_not_flagged(fapi, world):
    shop, item = world
    fan = fapi.fan(email="ann.smith@gmail.com")
    sale = buy_from(
        fapi, shop, item, {"email": "bob.smith@gmail.com"}, share(fapi, fan, item["id"])
    )
    assert reward_of(fapi, sale).review_state is None


def test_a_purchase_from_the_fans_signup_address_holds_the_reward(fapi, world):
    shop, item = world
    body = fapi.client.post(
        "/v1/fans", json={"handle": "ann"}, environ_base={"REMOTE_ADDR": "203.0.113.7"}
    )
    fan_id, key = body.get_json()["id"], body.get_json()["api_key"]
    code = fapi.ok(
        "POST", "/v1/share-links", type("A", (), {"key": key})(), {"content_id": item["id"]}, 201
    )["code"]
    flagged = buy_from(fapi, shop, item, {"email": "x@example.com"}, code, ip="203.0.113.7")
    honest = buy_from(fapi, shop, item, {"email": "y@example.com"}, code, ip="198.51.100.9")
    assert reward_of(fapi, flagged).review_state == "held"
    assert signals(fapi, reward_of(fapi, flagged).id) == ["shared_address"]
    assert reward_of(fapi, honest).review_state is None
    assert reward_of(fapi, honest).fan_id == fan_id


def test_an_invalid_client_ip_is_422(fapi, world):
    shop, item = world
    payload = {
        "content_id": item["id"],
        "amount": 1999,
        "currency": "USD",
        "buyer": {"email": "z@x.io"},
        "client_ip": "999.1.1.1",
    }
    response = fapi.call("POST", "/v1/purchases", shop, payload, headers={"Idempotency-Key": "ip"})
    assert response.status_code == 422 and "client_ip" in response.get_json()["errors"]


def sign_up_under(api, sponsor, address, n):
    for i in range(n):
        response = api.client.post(
            "/v1/fans",
            json={"handle": f"u{address.replace('.', '')}x{i}", "ref": sponsor.id},
            environ_base={"REMOTE_ADDR": address if isinstance(address, str) else address[i]},
        )
        assert response.status_code == 201


def test_a_sign_up_farm_flags_the_sponsor_and_holds_its_rewards(fapi, world):
    shop, item = world
    sponsor = fapi.fan()
    sign_up_under(fapi, sponsor, "192.0.2.1", 4)
    assert signals(fapi, sponsor.id) == ["signup_farm"]
    sign_up_under(fapi, sponsor, "192.0.2.2", 1)  # once per window
    assert signals(fapi, sponsor.id) == ["signup_farm"]
    sale = buy(fapi, shop, item, {"email": "c@x.io"}, share_code=share(fapi, sponsor, item["id"]))
    assert reward_of(fapi, sale).review_state == "held"


def test_sign_ups_from_many_addresses_are_not_a_farm(fapi):
    sponsor = fapi.fan()
    for i in range(6):
        response = fapi.client.post(
            "/v1/fans",
            json={"handle": f"honest{i}", "ref": sponsor.id},
            environ_base={"REMOTE_ADDR": f"198.51.100.{i + 1}"},
        )
        assert response.status_code == 201
    assert signals(fapi, sponsor.id) == []


def click(api, code, address, n):
    for _ in range(n):
        assert (
            api.client.get(f"/l/{code}", environ_base={"REMOTE_ADDR": address}).status_code == 302
        )


def test_many_clicks_from_one_address_and_no_sales_flag_the_link(fapi, world):
    shop, item = world
    flooded = share(fapi, fapi.fan(), item["id"])
    selling = share(fapi, fapi.fan(), item["id"])
    spread = share(fapi, fapi.fan(), item["id"])
    click(fapi, flooded, "192.0.2.50", 6)
    click(fapi, selling, "192.0.2.51", 6)
    buy(fapi, shop, item, {"email": "real@x.io"}, share_code=selling)
    for i in range(6):
        click(fapi, spread, f"198.51.100.{i + 1}", 1)
    fapi.session.rollback()
    report = scan(fapi.session, CONFIG)
    assert report.click_floods == 1
    assert signals(fapi, flooded) == ["click_flood"]
    assert signals(fapi, selling) == [] and signals(fapi, spread) == []
    assert scan(fapi.session, CONFIG).click_floods == 0  # not recorded twice


def test_a_downline_buying_through_one_storefront_right_after_sign_up_flags_the_fan(fapi, world):
    shop, item = world
    other_shop = fapi.storefront("Other")
    burst, honest = fapi.fan(), fapi.fan()
    for i in range(3):
        recruit = fapi.fan(ref=burst.id)
        buy(fapi, shop, item, {"fan_id": recruit.id})
        recruit = fapi.fan(ref=honest.id)
        buy(fapi, shop if i % 2 else other_shop, item, {"fan_id": recruit.id})
    fapi.session.rollback()
    assert scan(fapi.session, CONFIG).storefront_bursts == 1
    assert signals(fapi, burst.id) == ["storefront_burst"]
    assert signals(fapi, honest.id) == []


def test_buying_long_after_sign_up_is_not_a_burst(fapi, world):
    shop, item = world
    sponsor = fapi.fan()
    for _ in range(3):
        recruit = fapi.fan(ref=sponsor.id)
        buy(fapi, shop, item, {"fan_id": recruit.id})
    fapi.session.rollback()
    later = utcnow() + timedelta(hours=1)  # as if they had signed up an hour before buying
    from royalties.models import Fan

    for fan in fapi.session.scalars(select(Fan).where(Fan.sponsor_id == sponsor.id)):
        fan.created_at = later - timedelta(hours=2)
    fapi.session.commit()
    assert scan(fapi.session, CONFIG).storefront_bursts == 0


def test_the_review_queue_lists_held_rewards_with_their_signals_and_decisions_are_audited(
    fapi, world
):
    shop, item = world
    fan = fapi.fan(email="kim@example.com")
    sale = buy_from(fapi, shop, item, {"email": "KIM+2@example.com"}, share(fapi, fan, item["id"]))
    queue = fapi.ok("GET", "/v1/review", fapi.admin)["items"]
    assert [(q["fan_id"], q["amount"], [s["kind"] for s in q["signals"]]) for q in queue] == [
        (fan.id, 99, ["shared_email"])
    ]
    reward_id = queue[0]["reward_id"]
    assert fapi.call("GET", "/v1/review", fan).status_code == 403
    bad = fapi.call(
        "POST", f"/v1/review/{reward_id}", fapi.admin, {"decision": "maybe", "reason": "x"}
    )
    assert bad.status_code == 422
    decided = fapi.ok(
        "POST",
        f"/v1/review/{reward_id}",
        fapi.admin,
        {"decision": "approve", "reason": "same family"},
    )
    assert decided["review_state"] == "approved" and decided["decided_by"].startswith("key_")
    again = fapi.call(
        "POST", f"/v1/review/{reward_id}", fapi.admin, {"decision": "reject", "reason": "x"}
    )
    assert again.status_code == 409
    assert fapi.ok("GET", "/v1/review", fapi.admin)["items"] == []
    fapi.session.rollback()
    audit = fapi.session.scalars(select(ReviewDecision)).one()
    assert (audit.reward_id, audit.decision, audit.reason) == (reward_id, "approve", "same family")
    assert reward_of(fapi, sale).review_state == "approved"
    assert (
        fapi.call(
            "POST", "/v1/review/rwd_nope", fapi.admin, {"decision": "approve", "reason": "x"}
        ).status_code
        == 404
    )
