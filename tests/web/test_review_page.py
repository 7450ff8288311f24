"""The operator's review queue in the dashboard: held rewards with their signals, decided
one or many at a time with a reason (audited like the API), and a fan's signal cleared."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from royalties.fraud.detectors import FraudConfig
from royalties.models import Reward
from tests.api.test_fraud_clearing import farmed_sponsor
from tests.conftest import create_test_app
from tests.helpers import ApiDriver, buy, share
from tests.web.conftest import Browser

CONFIG = FraudConfig(signup_min=4, signup_share_pct=75, click_min=5)


def reward(api, sale):
    """The level-1 reward's (review_state, state), read as plain values: no transaction
    of ours stays open to hold SQLite's write lock."""
    api.session.rollback()
    row = api.session.execute(
        select(Reward.review_state, Reward.state).where(
            Reward.purchase_id == sale["id"], Reward.level == 1
        )
    ).one()
    api.session.rollback()
    return tuple(row)


@pytest.fixture
def fapi(engine, db_url, session):
    app = create_test_app(engine, db_url, FRAUD=CONFIG)
    return ApiDriver(app.test_client(), session)


@pytest.fixture
def setting(fapi):
    artist, shop = fapi.artist(), fapi.storefront()
    fapi.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [500], "hold_days": 0},
    )
    item = fapi.content(artist)
    sponsor = farmed_sponsor(fapi)  # flagged: its rewards are held
    code = share(fapi, sponsor, item["id"])
    sales = [buy(fapi, shop, item, {"email": f"held{n}@x.io"}, share_code=code) for n in range(3)]
    admin = Browser(fapi.client.application)
    admin.sign_in(fapi.admin.key)
    return shop, item, sponsor, code, sales, admin


def test_the_queue_lists_held_rewards_with_their_signals(fapi, setting):
    *_, _sales, admin = setting
    page = admin.get("/dashboard/review").get_data(as_text=True)
    held = fapi.ok("GET", "/v1/review", fapi.admin)["items"]
    assert len(held) == 3
    for item in held:
        assert f'data-reward="{item["reward_id"]}"' in page
    assert "signup_farm" in page and 'class="inline clear-signal"' in page


def test_the_operator_rejects_two_at_once_with_a_reason_and_approves_one(fapi, setting):
    *_, sales, admin = setting
    ids = [r["reward_id"] for r in fapi.ok("GET", "/v1/review", fapi.admin)["items"]]
    admin.get("/dashboard/review")
    done = admin.client.post(
        "/dashboard/review/decide",
        data={
            "csrf_token": admin.token,
            "reward_id": ids[:2],
            "decision": "reject",
            "reason": "one person, many accounts",
        },
    )
    assert done.status_code == 303
    assert "Rejected 2 rewards." in admin.get("/dashboard/review").get_data(as_text=True)
    assert [reward(fapi, s)[0] for s in sales[:2]] == ["rejected", "rejected"]
    admin.get("/dashboard/review")
    approve = admin.post(
        "/dashboard/review/decide",
        {"reward_id": ids[2], "decision": "approve", "reason": "checked by phone"},
    )
    assert approve.status_code == 303
    assert reward(fapi, sales[2]) == ("approved", "pending")  # goes on as usual: it matures
    sponsor = setting[2]
    fapi.ok("GET", f"/v1/fans/{sponsor.id}/balance", sponsor)  # on the next read (no hold)
    assert reward(fapi, sales[2]) == ("approved", "available")
    assert fapi.ok("GET", "/v1/review", fapi.admin)["items"] == []


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"decision": "reject", "reason": "why"}, "Tick at least one reward"),
        ({"decision": "maybe", "reason": "why"}, "Choose approve or reject"),
        ({"decision": "reject", "reason": ""}, "Say why"),
    ],
)
def test_a_bad_decision_form_says_what_is_wrong_and_decides_nothing(fapi, setting, form, words):
    *_, _sales, admin = setting
    ids = [r["reward_id"] for r in fapi.ok("GET", "/v1/review", fapi.admin)["items"]]
    admin.get("/dashboard/review")
    if "Tick" not in words:
        form = {**form, "reward_id": ids[0]}
    response = admin.post("/dashboard/review/decide", form)
    assert response.status_code == 422 and words in response.get_data(as_text=True)
    assert len(fapi.ok("GET", "/v1/review", fapi.admin)["items"]) == 3


def test_only_the_operator_sees_the_queue(fapi, setting):
    *_, sponsor, _, _, _ = setting
    fan = Browser(fapi.client.application)
    fan.sign_in(sponsor.key)
    assert fan.get("/dashboard/review").status_code == 403
    assert fan.post("/dashboard/review/decide", {"decision": "approve"}).status_code == 403


def test_clearing_the_fan_s_signal_from_the_page_lets_its_next_reward_through(fapi, setting):
    shop, item, sponsor, code, _sales, admin = setting
    signal = fapi.ok("GET", f"/v1/fraud-signals?subject_id={sponsor.id}", fapi.admin)["items"][0]
    admin.get("/dashboard/review")
    blank = admin.post(f"/dashboard/review/signals/{signal['id']}/clear", {"reason": " "})
    assert blank.status_code == 422
    done = admin.post(
        f"/dashboard/review/signals/{signal['id']}/clear", {"reason": "a school's network"}
    )
    assert done.status_code == 303
    cleared = fapi.ok("GET", f"/v1/fraud-signals?subject_id={sponsor.id}", fapi.admin)["items"]
    assert cleared[0]["state"] == "cleared"
    assert cleared[0]["cleared"]["reason"] == "a school's network"
    later = buy(fapi, shop, item, {"email": "later@x.io"}, share_code=code)
    assert reward(fapi, later) == (None, "available")
    assert len(fapi.ok("GET", "/v1/review", fapi.admin)["items"]) == 3  # held ones wait


def test_an_operator_signed_in_by_email_decides_from_the_page(make_app, session, inbox):
    """An email session has no key: the decision is recorded as its sign-in link's."""
    from tests.smtp import links_in
    from tests.web.test_sign_in_by_email import ask, use

    app = make_app(FRAUD=CONFIG, ADMIN_EMAILS="boss@example.com")
    api = ApiDriver(app.test_client(), session)
    artist, shop = api.artist(), api.storefront()
    item = api.content(artist)
    sponsor = farmed_sponsor(api)
    sale = buy(api, shop, item, {"email": "held@x.io"}, share_code=share(api, sponsor, item["id"]))
    [held] = api.ok("GET", "/v1/review", api.admin)["items"]
    boss = Browser(app)
    ask(boss, "boss@example.com")
    [message] = inbox.wait_for(1)
    assert use(boss, links_in(message)[0]).status_code == 302
    boss.get("/dashboard/review")
    form = {"reward_id": held["reward_id"], "decision": "approve", "reason": "checked"}
    assert boss.post("/dashboard/review/decide", form).status_code == 303
    assert reward(api, sale) == ("approved", "pending")
    [decision] = api.ok("GET", "/v1/audit-log?action=review.approved", api.admin)["items"]
    assert decision["actor"]["link_id"].startswith("sil_")
