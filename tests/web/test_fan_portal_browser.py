"""A fan's first visit in headless Chromium: from an artist's join page with a friend's
ref code, to a link of their own with its QR code, a sale showing up, and the payouts
button. (Signing in from an emailed link joins this journey with the email sign-in.)"""

from __future__ import annotations

import re
from typing import Any

from royalties.models import Fan
from tests.helpers import buy
from tests.web.conftest import BROWSER_MARKS, _no_csp_violations

pytestmark = BROWSER_MARKS


def test_a_fan_joins_with_a_ref_code_gets_a_link_and_its_qr_and_sees_a_sale(
    new_page: Any,
    live_url: str,
    world: Any,
    api: Any,
    shots: Any,
) -> None:
    ann, code = world.fans["ann"], world.links["ann"]
    page = new_page()
    page.goto(f"{live_url}/join/{world.artist.id}?ref={code}")
    assert "Nina Vale" in page.locator("#join-heading").inner_text()
    assert page.locator("#plan-words li").count() >= 2
    assert "Midnight Drive" in page.locator("#catalogue").inner_text()
    shots(page, "join")

    page.get_by_label("Your handle").fill("x")  # too short: told, nothing written
    page.get_by_label("Your email").fill("zoe@example.com")
    page.get_by_role("button", name="Join").click()
    assert "2 to 64" in page.locator("#join-handle-error").inner_text()
    page.get_by_label("Your handle").fill("zoe")
    page.get_by_role("button", name="Join").click()
    page.wait_for_url(re.compile(r".*/dashboard/fans/fan_\w+\?artist="))
    assert page.get_by_role("heading", name="zoe").is_visible()
    assert "brought in by ann" in page.locator(".page-head .meta").inner_text()
    api.session.rollback()
    zoe = api.session.query(Fan.id, Fan.sponsor_id).filter_by(handle="zoe").one()
    api.session.rollback()
    assert zoe.sponsor_id == ann.id

    page.locator('#shareable li:has-text("Midnight Drive") button.get-link').click()
    page.wait_for_selector("#share-links")
    row = page.locator("#share-links tbody tr").first
    qr = row.locator("img.qr")
    qr.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", qr.element_handle())
    zoe_code = row.get_attribute("data-code")
    assert zoe_code and zoe_code != code
    shots(page, "fan-link")

    buy(api, world.shop, world.song, {"email": "friend-of-zoe@example.com"}, share_code=zoe_code)
    page.reload()
    cells = page.locator(f'tr[data-code="{zoe_code}"] td.num').all_inner_texts()
    assert cells == ["0", "1"]  # no click counted, one sale
    assert page.locator("#coming tbody tr").count() == 1  # its reward, on its way
    assert page.get_by_role("button", name="Set up payouts").is_visible()
    _no_csp_violations(page)
