"""The fan page's Email notifications form and PATCH /v1/fans/{id}: the fan (or an admin)
switches them; CSRF; a message for bad input, and nothing written."""

from __future__ import annotations

from typing import Any

from royalties.models import Fan


def notify_of(api: Any, fan_id: str) -> bool:
    api.session.rollback()
    value = api.session.get(Fan, fan_id, populate_existing=True).notify_email
    api.session.rollback()
    return bool(value)


def test_the_fan_switches_notifications_off_and_on_from_its_page(api, make_visitor):
    ann = api.fan("ann", email="ann@fans.test")
    visitor = make_visitor()
    visitor.sign_in(ann.key)
    page = visitor.get(f"/dashboard/fans/{ann.id}").get_data(as_text=True)
    assert 'id="notifications"' in page and 'value="on" checked' in page

    saved = visitor.post(f"/dashboard/fans/{ann.id}/notifications", {"notifications": "off"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith("#notifications")
    assert notify_of(api, ann.id) is False
    page = visitor.get(f"/dashboard/fans/{ann.id}").get_data(as_text=True)
    assert "Email notifications are off." in page and 'value="off" checked' in page
    assert api.ok("GET", f"/v1/fans/{ann.id}", ann)["notifications"] is False

    visitor.post(f"/dashboard/fans/{ann.id}/notifications", {"notifications": "on"})
    assert notify_of(api, ann.id) is True


def test_a_bad_choice_or_a_missing_token_writes_nothing(api, make_visitor):
    ann = api.fan("ann", email="ann@fans.test")
    visitor = make_visitor()
    visitor.sign_in(ann.key)
    visitor.get(f"/dashboard/fans/{ann.id}")
    for form in ({"notifications": "maybe"}, {}):
        answer = visitor.post(f"/dashboard/fans/{ann.id}/notifications", form)
        assert answer.status_code == 422
        assert "Choose On or Off, then Save." in answer.get_data(as_text=True)
    forged = visitor.post(
        f"/dashboard/fans/{ann.id}/notifications", {"notifications": "off"}, csrf=False
    )
    assert forged.status_code == 400
    assert notify_of(api, ann.id) is True


def test_another_fan_cannot_switch_them_off(api, make_visitor):
    ann, bob = api.fan("ann", email="ann@fans.test"), api.fan("bob")
    visitor = make_visitor()
    visitor.sign_in(bob.key)
    visitor.get(f"/dashboard/fans/{bob.id}")
    answer = visitor.post(f"/dashboard/fans/{ann.id}/notifications", {"notifications": "off"})
    assert answer.status_code == 403
    assert notify_of(api, ann.id) is True
    # and through the API: only that fan or an admin
    refused = api.call("PATCH", f"/v1/fans/{ann.id}", bob, {"notifications": False})
    assert refused.status_code == 403
    bad = api.call("PATCH", f"/v1/fans/{ann.id}", ann, {"notifications": "nope"})
    assert bad.status_code == 422
    unknown = api.call("PATCH", f"/v1/fans/{ann.id}", ann, {"notifications": False, "x": 1})
    assert unknown.status_code == 422
    assert notify_of(api, ann.id) is True
    assert api.ok("PATCH", f"/v1/fans/{ann.id}", api.admin, {"notifications": False})
