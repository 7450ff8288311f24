"""Switching email notifications off on the fan page, in headless Chromium at phone width."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import BROWSER_MARKS, _sign_in
from tests.web.test_fan_notifications import notify_of

pytestmark = BROWSER_MARKS


def test_the_switch_in_a_browser_at_phone_width(
    new_page: Any,
    live_url: str,
    world: Any,
    api: Any,
    shots: Any,
) -> None:
    ann = world.fans["ann"]
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    path = f"/dashboard/fans/{ann.id}"
    _sign_in(page, live_url, ann.key, path)
    section = page.locator("#notifications")
    section.scroll_into_view_if_needed()
    assert section.get_by_label("On").is_checked()
    section.get_by_label("Off").check()
    section.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{live_url}{path}#notifications")
    assert "Email notifications are off." in page.locator(".notice").first.inner_text()
    assert page.locator("#notifications").get_by_label("Off").is_checked()
    box = section.bounding_box()  # the form fits the phone's width
    page.locator("#notifications-save").scroll_into_view_if_needed()
    save = page.locator("#notifications-save").bounding_box()
    assert save is not None and save["x"] + save["width"] <= 390
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    shots(page, "fan-notifications")
    assert notify_of(api, ann.id) is False
