"""The operator's audit log: every operator action, through the API or the dashboard,
writes exactly one row naming the key (or the email session) that acted, in the
action's own transaction; a refused action writes none; only admins read the log."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from royalties.keys import authenticate
from royalties.models import OperatorAction
from tests.web.conftest import Browser
from tests.web.test_review_page import fapi, setting  # noqa: F401 - fixtures


def log(api) -> list[OperatorAction]:
    """The log as stored, oldest first (read, then our transaction is ended)."""
    api.session.rollback()
    rows = list(api.session.scalars(select(OperatorAction).order_by(OperatorAction.id)))
    api.session.expunge_all()
    api.session.rollback()
    return rows


def key_id(api, plain: str) -> str:
    principal = authenticate(api.session, plain)
    api.session.rollback()
    assert principal is not None
    return principal.key_id


def one_new(api, before: int, action: str, target: str | None, actor_key: str | None) -> Any:
    rows = log(api)
    assert len(rows) == before + 1, [(r.action, r.target_id) for r in rows]
    row = rows[-1]
    assert (row.action, row.target_id) == (action, target)
    assert (row.actor_key_id, row.actor_role, row.actor_owner_id) == (actor_key, "admin", None)
    assert "rk_" not in str(row.detail)  # no key in the detail, ever
    return row


@pytest.fixture
def operator(api, app):
    browser = Browser(app)
    browser.sign_in(api.admin.key)
    return browser


def test_api_actions_each_write_one_row_naming_the_admin_key(api):
    admin = key_id(api, api.admin.key)
    n = len(log(api))
    artist = api.ok("POST", "/v1/artists", api.admin, {"name": "Ida", "email": "i@x.io"}, 201)
    row = one_new(api, n, "artist.created", artist["id"], admin)
    assert row.detail == {"name": "Ida", "email": "i@x.io"}
    shop = api.ok(
        "POST", "/v1/storefronts", api.admin, {"name": "S", "base_url": "https://s.io"}, 201
    )
    one_new(api, n + 1, "storefront.created", shop["id"], admin)
    fan = api.fan()
    fan_key = next(
        k["id"] for k in api.ok("GET", f"/v1/keys?owner_id={fan.id}", api.admin)["items"]
    )
    api.ok("POST", f"/v1/keys/{fan_key}/revoke", api.admin)
    row = one_new(api, n + 2, "key.revoked", fan_key, admin)
    assert row.detail == {"role": "fan", "owner_id": fan.id}
    api.ok("POST", f"/v1/keys/{fan_key}/revoke", api.admin)  # already revoked: nothing
    assert len(log(api)) == n + 3
    rotated = api.ok("POST", "/v1/keys/rotate", api.admin, None, 201)
    row = one_new(api, n + 3, "key.rotated", rotated["key_id"], admin)
    assert row.detail["replaced_key_id"] == admin


def test_a_fan_rotating_its_own_key_is_logged_as_that_fan(api):
    fan = api.fan()
    fan_key = key_id(api, fan.key)
    rotated = api.ok("POST", "/v1/keys/rotate", fan, None, 201)
    [row] = log(api)
    assert (row.action, row.target_id) == ("key.rotated", rotated["key_id"])
    assert (row.actor_key_id, row.actor_role, row.actor_owner_id) == (fan_key, "fan", fan.id)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/artists", {"name": ""}, 422),
        ("/v1/artists", {"name": "X", "email": "not-an-address"}, 422),
        ("/v1/artists", {"name": "Dup", "email": "dup@x.io"}, 409),
        ("/v1/storefronts", {"name": "S", "base_url": "ftp://x"}, 422),
        ("/v1/keys/key_00000000000000000000/revoke", None, 404),
    ],
)
def test_a_refused_api_action_writes_no_row(api, path, body, status):
    api.ok("POST", "/v1/artists", api.admin, {"name": "Dup", "email": "dup@x.io"}, 201)
    n = len(log(api))
    assert api.call("POST", path, api.admin, body).status_code == status
    assert len(log(api)) == n


def test_review_decisions_and_a_cleared_signal_are_logged_from_the_api(fapi, setting):  # noqa: F811 - fixtures
    _shop, _item, sponsor, _code, _sales, _admin = setting
    admin = key_id(fapi, fapi.admin.key)
    held = [i["reward_id"] for i in fapi.ok("GET", "/v1/review", fapi.admin)["items"]]
    n = len(log(fapi))
    fapi.ok("POST", f"/v1/review/{held[0]}", fapi.admin, {"decision": "approve", "reason": "ok"})
    one_new(fapi, n, "review.approved", held[0], admin)
    fapi.ok("POST", f"/v1/review/{held[1]}", fapi.admin, {"decision": "reject", "reason": "farm"})
    row = one_new(fapi, n + 1, "review.rejected", held[1], admin)
    assert row.detail == {"fan_id": sponsor.id, "reason": "farm"}
    # deciding it again is a conflict: no row
    again = fapi.call(
        "POST", f"/v1/review/{held[1]}", fapi.admin, {"decision": "approve", "reason": "x"}
    )
    assert again.status_code == 409 and len(log(fapi)) == n + 2
    [signal] = fapi.ok("GET", f"/v1/fraud-signals?subject_id={sponsor.id}", fapi.admin)["items"]
    path = f"/v1/review/signals/{signal['id']}/clear"
    fapi.ok("POST", path, fapi.admin, {"reason": "a real fan club"})
    row = one_new(fapi, n + 2, "signal.cleared", str(signal["id"]), admin)
    assert row.detail["subject_id"] == sponsor.id and row.detail["kind"] == "signup_farm"
    assert fapi.call("POST", path, fapi.admin, {"reason": "again"}).status_code == 409
    assert len(log(fapi)) == n + 3


def test_review_decisions_and_a_cleared_signal_are_logged_from_the_pages(fapi, setting):  # noqa: F811 - fixtures
    _shop, _item, sponsor, _code, _sales, admin_page = setting
    admin = key_id(fapi, fapi.admin.key)
    held = [i["reward_id"] for i in fapi.ok("GET", "/v1/review", fapi.admin)["items"]]
    n = len(log(fapi))
    admin_page.get("/dashboard/review")
    answer = admin_page.post(
        "/dashboard/review/decide",
        {"decision": "reject", "reason": "farm", "reward_id": held[:2]},
    )
    assert answer.status_code == 303
    rows = log(fapi)[n:]
    assert [(r.action, r.target_id, r.actor_key_id) for r in rows] == [
        ("review.rejected", held[0], admin),
        ("review.rejected", held[1], admin),
    ]
    # no reason: refused with a message, nothing decided, nothing logged
    admin_page.get("/dashboard/review")
    refused = admin_page.post(
        "/dashboard/review/decide", {"decision": "approve", "reward_id": held[2]}
    )
    assert refused.status_code == 422 and len(log(fapi)) == n + 2
    [signal] = fapi.ok("GET", f"/v1/fraud-signals?subject_id={sponsor.id}", fapi.admin)["items"]
    admin_page.get("/dashboard/review")
    cleared = admin_page.post(f"/dashboard/review/signals/{signal['id']}/clear", {"reason": "ok"})
    assert cleared.status_code == 303
    one_new(fapi, n + 2, "signal.cleared", str(signal["id"]), admin)


def test_page_actions_each_write_one_row_naming_the_admin_key(api, operator):
    admin = key_id(api, api.admin.key)
    n = len(log(api))
    operator.get("/dashboard/admin/accounts")
    made = operator.post("/dashboard/admin/accounts", {"kind": "artist", "name": "Pia"})
    artist_id = re.search(r"<code>(art_\w+)</code>", made.get_data(as_text=True)).group(1)
    one_new(api, n, "artist.created", artist_id, admin)
    operator.post(
        "/dashboard/admin/accounts",
        {"kind": "storefront", "name": "Shop", "base_url": "https://shop.example"},
    )
    assert log(api)[-1].action == "storefront.created" and len(log(api)) == n + 2
    fan = api.fan()
    fan_key = next(
        k["id"] for k in api.ok("GET", f"/v1/keys?owner_id={fan.id}", api.admin)["items"]
    )
    operator.get("/dashboard/admin/keys")
    rotated = operator.post(f"/dashboard/admin/keys/{fan_key}/rotate")
    assert rotated.status_code == 200
    row = one_new(api, n + 2, "key.rotated", log(api)[-1].target_id, admin)
    assert row.detail["replaced_key_id"] == fan_key
    operator.get("/dashboard/admin/keys")
    assert operator.post(f"/dashboard/admin/keys/{row.target_id}/revoke").status_code == 303
    one_new(api, n + 3, "key.revoked", row.target_id, admin)
    # refused on the page: a bad form, and revoking one's own key; nothing logged
    operator.get("/dashboard/admin/accounts")
    assert (
        operator.post("/dashboard/admin/accounts", {"kind": "artist", "name": ""}).status_code
        == 422
    )
    operator.get("/dashboard/admin/keys")
    operator.post(f"/dashboard/admin/keys/{admin}/revoke")
    assert len(log(api)) == n + 4


def test_an_admin_signed_in_by_email_is_logged_by_its_session(make_app, session, inbox):
    from tests.helpers import ApiDriver
    from tests.smtp import links_in
    from tests.web.test_sign_in_by_email import ask, use

    app = make_app(ADMIN_EMAILS="boss@example.com")
    api = ApiDriver(app.test_client(), session)
    browser = Browser(app)
    ask(browser, "boss@example.com")
    [message] = inbox.wait_for(1)
    assert use(browser, links_in(message)[0]).status_code == 302
    browser.get("/dashboard/admin/accounts")
    browser.post("/dashboard/admin/accounts", {"kind": "artist", "name": "Lia"})
    [row] = log(api)
    assert row.action == "artist.created" and row.actor_role == "admin"
    assert row.actor_key_id is None and row.actor_link_id.startswith("sil_")


def test_the_log_is_read_newest_first_in_pages_by_action_and_actor(api):
    for n in range(3):
        api.ok("POST", "/v1/artists", api.admin, {"name": f"A{n}"}, 201)
    api.ok("POST", "/v1/storefronts", api.admin, {"name": "S", "base_url": "https://s.io"}, 201)
    first = api.ok("GET", "/v1/audit-log?limit=2", api.admin)
    assert [e["action"] for e in first["items"]] == ["storefront.created", "artist.created"]
    rest = api.ok("GET", f"/v1/audit-log?limit=2&cursor={first['next_cursor']}", api.admin)
    assert [e["detail"]["name"] for e in rest["items"]] == ["A1", "A0"]
    assert rest["next_cursor"] is None
    only = api.ok("GET", "/v1/audit-log?action=storefront.created", api.admin)["items"]
    assert [e["target_id"] for e in only] == [first["items"][0]["target_id"]]
    admin = key_id(api, api.admin.key)
    assert only[0]["actor"] == {"key_id": admin, "link_id": None, "role": "admin", "owner_id": None}
    mine = api.ok("GET", f"/v1/audit-log?actor_key_id={admin}", api.admin)["items"]
    assert len(mine) == 4
    assert api.ok("GET", "/v1/audit-log?actor_key_id=key_nobody", api.admin)["items"] == []
    bad = api.call("GET", "/v1/audit-log?action=artist.deleted", api.admin)
    assert bad.status_code == 422
    assert api.call("GET", "/v1/audit-log?cursor=nope", api.admin).status_code == 422


def test_only_admins_read_the_log(api, app):
    artist, fan = api.artist(), api.fan()
    assert api.call("GET", "/v1/audit-log").status_code == 401
    assert api.call("GET", "/v1/audit-log", artist).status_code == 403
    assert api.call("GET", "/v1/audit-log", fan).status_code == 403
    for who in (artist, fan):
        browser = Browser(app)
        browser.sign_in(who.key)
        assert browser.get("/dashboard/admin/audit").status_code == 403
    assert Browser(app).get("/dashboard/admin/audit").status_code == 302  # to sign-in


def test_the_audit_page_lists_who_what_when_newest_first_and_pages(api, operator):
    admin = key_id(api, api.admin.key)
    for n in range(3):
        api.ok("POST", "/v1/artists", api.admin, {"name": f"Page{n}"}, 201)
    html = operator.get("/dashboard/admin/audit").get_data(as_text=True)
    targets = re.findall(r'data-action="artist.created" data-target="(art_\w+)"', html)
    assert len(targets) == 3 and admin in html and "Page2" in html
    assert html.index("Page2") < html.index("Page0")  # newest first
    import api.web.audit as page_module

    page_module.PER_PAGE, saved = 2, page_module.PER_PAGE
    try:
        html = operator.get("/dashboard/admin/audit").get_data(as_text=True)
        older = re.search(r'href="([^"]+)" id="audit-older"', html)
        assert older is not None and "Page0" not in html
        html = operator.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
        assert "Page0" in html and "Page2" not in html
    finally:
        page_module.PER_PAGE = saved
    only = operator.get("/dashboard/admin/audit?action=storefront.created").get_data(as_text=True)
    assert 'id="audit-empty"' in only
    assert 'id="audit-link"' in operator.get("/dashboard/").get_data(as_text=True)
