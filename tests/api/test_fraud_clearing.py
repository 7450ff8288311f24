"""An admin clears a fraud signal on a fan or a link, with a reason, audited: the fan's or
link's next rewards flow as usual, and rewards the signal already held stay held until
decided."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from royalties.db import utcnow
from royalties.fraud.detectors import FraudConfig
from royalties.fraud.signals import scan
from royalties.models import FraudSignal, Reward, SignalClearance
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, buy, share

CONFIG = FraudConfig(signup_min=4, signup_share_pct=75, click_min=5)


@pytest.fixture
def fapi(engine, db_url, session):
    app = create_test_app(engine, db_url, FRAUD=CONFIG)
    return ApiDriver(app.test_client(), session)


@pytest.fixture
def world(fapi):
    """A storefront and an item whose plan pays two levels with no hold: a reward that
    is not held is ``available`` at once, a held one waits in ``pending``."""
    artist, shop = fapi.artist(), fapi.storefront()
    fapi.ok(
        "PUT",
        f"/v1/artists/{artist.id}/reward-plan",
        artist,
        {"level_rates_bps": [500, 200], "hold_days": 0},
    )
    return shop, fapi.content(artist)


def farmed_sponsor(api: ApiDriver, address: str = "192.0.2.1") -> Actor:
    """A fan flagged ``signup_farm``: four recruits signed up from one address."""
    sponsor = api.fan()
    for i in range(4):
        response = api.client.post(
            "/v1/fans",
            json={"handle": f"farm{sponsor.id}x{i}", "ref": sponsor.id},
            environ_base={"REMOTE_ADDR": address},
        )
        assert response.status_code == 201
    return sponsor


def reward(api, sale, level=1):
    api.session.rollback()
    row = api.session.scalars(
        select(Reward).where(Reward.purchase_id == sale["id"], Reward.level == level)
    ).one()
    api.session.rollback()
    return row.review_state, row.state


def only_signal(api, subject_id):
    items = api.ok("GET", f"/v1/fraud-signals?subject_id={subject_id}", api.admin)["items"]
    assert len(items) == 1, items
    return items[0]


def clear(api, signal_id, reason="a school's shared network", as_=None):
    return api.call(
        "POST", f"/v1/review/signals/{signal_id}/clear", as_ or api.admin, {"reason": reason}
    )


def test_a_cleared_fan_signal_holds_no_new_reward_and_the_clearance_is_audited(fapi, world):
    shop, item = world
    sponsor = farmed_sponsor(fapi)
    code = share(fapi, sponsor, item["id"])
    before = buy(fapi, shop, item, {"email": "one@x.io"}, share_code=code)
    assert reward(fapi, before) == ("held", "pending")
    signal = only_signal(fapi, sponsor.id)
    assert (signal["kind"], signal["state"], signal["cleared"]) == ("signup_farm", "active", None)

    cleared = clear(fapi, signal["id"])
    assert cleared.status_code == 200, cleared.get_json()
    body = cleared.get_json()
    assert (body["id"], body["state"]) == (signal["id"], "cleared")
    assert body["cleared"]["reason"] == "a school's shared network"
    assert body["cleared"]["cleared_by"].startswith("key_")

    after = buy(fapi, shop, item, {"email": "two@x.io"}, share_code=code)
    assert reward(fapi, after) == (None, "available")
    assert reward(fapi, before) == ("held", "pending")  # held before: stays held until decided

    fapi.session.rollback()
    audit = fapi.session.scalars(select(SignalClearance)).one()
    assert (audit.signal_id, audit.reason, audit.cleared_by) == (
        signal["id"],
        "a school's shared network",
        body["cleared"]["cleared_by"],
    )
    assert abs(audit.cleared_at - utcnow()) < timedelta(minutes=1)
    fapi.session.rollback()
    assert only_signal(fapi, sponsor.id) == body  # the list shows the clearance too


def test_the_review_queue_shows_a_held_reward_with_its_cleared_signal(fapi, world):
    shop, item = world
    sponsor = farmed_sponsor(fapi)
    sale = buy(fapi, shop, item, {"email": "q@x.io"}, share_code=share(fapi, sponsor, item["id"]))
    signal_id = only_signal(fapi, sponsor.id)["id"]
    assert clear(fapi, signal_id).status_code == 200
    queue = fapi.ok("GET", "/v1/review", fapi.admin)["items"]
    assert [(q["purchase_id"], [s["id"] for s in q["signals"]]) for q in queue] == [
        (sale["id"], [signal_id])
    ]
    assert queue[0]["signals"][0]["state"] == "cleared"


def test_clearing_a_level_two_fans_signal_releases_its_next_rewards(fapi, world):
    shop, item = world
    sponsor = farmed_sponsor(fapi)
    recruit = fapi.fan(ref=sponsor.id)
    code = share(fapi, recruit, item["id"])
    before = buy(fapi, shop, item, {"email": "l2a@x.io"}, share_code=code)
    assert reward(fapi, before, level=1) == (None, "available")
    assert reward(fapi, before, level=2) == ("held", "pending")
    assert clear(fapi, only_signal(fapi, sponsor.id)["id"]).status_code == 200
    after = buy(fapi, shop, item, {"email": "l2b@x.io"}, share_code=code)
    assert reward(fapi, after, level=2) == (None, "available")


def test_a_cleared_link_signal_holds_no_new_reward(fapi, world):
    shop, item = world
    owner = fapi.fan()
    code = share(fapi, owner, item["id"])
    for _ in range(5):
        assert (
            fapi.client.get(f"/l/{code}", environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code
            == 302
        )
    fapi.session.rollback()
    assert scan(fapi.session, CONFIG).click_floods == 1
    before = buy(fapi, shop, item, {"email": "l1@x.io"}, share_code=code)
    assert reward(fapi, before) == ("held", "pending")
    signal = only_signal(fapi, code)
    assert (signal["kind"], signal["subject_type"]) == ("click_flood", "link")
    assert clear(fapi, signal["id"], "a campaign's launch").status_code == 200
    after = buy(fapi, shop, item, {"email": "l2@x.io"}, share_code=code)
    assert reward(fapi, after) == (None, "available")
    assert scan(fapi.session, CONFIG).click_floods == 0  # the same clicks do not flag it again


def test_the_same_facts_do_not_flag_a_cleared_fan_again_within_the_window(fapi, world):
    shop, item = world
    sponsor = farmed_sponsor(fapi)
    assert clear(fapi, only_signal(fapi, sponsor.id)["id"]).status_code == 200
    response = fapi.client.post(
        "/v1/fans",
        json={"handle": f"late{sponsor.id}", "ref": sponsor.id},
        environ_base={"REMOTE_ADDR": "192.0.2.1"},
    )
    assert response.status_code == 201
    assert only_signal(fapi, sponsor.id)["state"] == "cleared"
    sale = buy(fapi, shop, item, {"email": "w@x.io"}, share_code=share(fapi, sponsor, item["id"]))
    assert reward(fapi, sale) == (None, "available")


def test_a_signal_is_cleared_once(fapi):
    sponsor = farmed_sponsor(fapi)
    signal_id = only_signal(fapi, sponsor.id)["id"]
    assert clear(fapi, signal_id, "first").status_code == 200
    again = clear(fapi, signal_id, "second")
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"
    assert "already cleared" in again.get_json()["detail"]
    fapi.session.rollback()
    assert [c.reason for c in fapi.session.scalars(select(SignalClearance))] == ["first"]


def test_a_signal_on_a_reward_is_decided_with_the_reward_not_cleared(fapi, world):
    shop, item = world
    fan = fapi.fan(email="kim@example.com")
    buy(fapi, shop, item, {"email": "kim+2@example.com"}, share_code=share(fapi, fan, item["id"]))
    fapi.session.rollback()
    signal = fapi.session.scalars(select(FraudSignal)).one()
    fapi.session.rollback()
    refused = clear(fapi, signal.id)
    assert refused.status_code == 409
    assert "approve or reject the reward" in refused.get_json()["detail"]


@pytest.mark.parametrize("signal_id", ["999999", "0", "abc", "1" * 30, "-1"])
def test_an_unknown_signal_is_404(fapi, signal_id):
    response = clear(fapi, signal_id)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "not_found"


def test_only_admins_may_list_or_clear_signals(fapi, world):
    sponsor = farmed_sponsor(fapi)
    signal_id = only_signal(fapi, sponsor.id)["id"]
    artist = fapi.artist("Other")
    for actor in (sponsor, artist, fapi.storefront("Other shop")):
        assert clear(fapi, signal_id, as_=actor).status_code == 403
        assert fapi.call("GET", "/v1/fraud-signals", actor).status_code == 403
    assert clear(fapi, signal_id, as_=Actor(None, "roy_nope")).status_code == 401
    assert only_signal(fapi, sponsor.id)["state"] == "active"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 501},
        {"reason": "line\nbreak"},
        {"reason": 5},
        {"reason": "ok", "extra": 1},
    ],
)
def test_a_missing_blank_or_too_long_reason_is_422(fapi, body):
    sponsor = farmed_sponsor(fapi)
    signal_id = only_signal(fapi, sponsor.id)["id"]
    response = fapi.call("POST", f"/v1/review/signals/{signal_id}/clear", fapi.admin, body)
    assert response.status_code == 422, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert only_signal(fapi, sponsor.id)["state"] == "active"


def test_a_reason_of_the_maximum_length_is_kept_whole(fapi):
    sponsor = farmed_sponsor(fapi)
    signal_id = only_signal(fapi, sponsor.id)["id"]
    assert clear(fapi, signal_id, "x" * 500).get_json()["cleared"]["reason"] == "x" * 500


def test_signals_are_listed_newest_first_and_filtered_by_state_and_subject(fapi):
    cleared, active = farmed_sponsor(fapi, "192.0.2.1"), farmed_sponsor(fapi, "192.0.2.2")
    assert clear(fapi, only_signal(fapi, cleared.id)["id"]).status_code == 200

    def listed(query=""):
        page = fapi.ok("GET", f"/v1/fraud-signals{query}", fapi.admin)
        return [s["subject_id"] for s in page["items"]], page["next_cursor"]

    assert listed() == ([active.id, cleared.id], None)
    assert listed("?state=cleared") == ([cleared.id], None)
    assert listed("?state=active") == ([active.id], None)
    assert listed("?subject_type=link") == ([], None)
    assert listed(f"?subject_type=fan&subject_id={cleared.id}") == ([cleared.id], None)
    first, cursor = listed("?limit=1")
    assert first == [active.id] and cursor is not None
    assert listed(f"?limit=1&cursor={cursor}") == ([cleared.id], None)
    for bad in ("?state=gone", "?subject_type=user", "?cursor=abc", "?cursor=-1", "?limit=0"):
        response = fapi.call("GET", f"/v1/fraud-signals{bad}", fapi.admin)
        assert response.status_code == 422, bad
        assert response.mimetype == "application/problem+json"
