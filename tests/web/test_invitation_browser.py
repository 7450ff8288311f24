"""The operator invites an artist in headless Chromium, at a phone's width: a bad
address is refused with a message, a good one mails a link that signs the artist in
through the sign-in pages, and the audit log shows who invited whom, and when."""

from __future__ import annotations

from typing import Any

from tests.smtp import links_in
from tests.web.conftest import BROWSER_MARKS, _no_csp_violations, _sign_in

pytestmark = BROWSER_MARKS


def test_the_operator_invites_an_artist_who_signs_in_from_the_mail(
    new_page: Any,
    live_url: str,
    app: Any,
    world: Any,
    inbox: Any,
    shots: Any,
) -> None:
    app.config["PUBLIC_BASE_URL"] = live_url  # links point at this server
    artist_id = world.artist.id
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    _sign_in(page, live_url, world.admin.key, "/dashboard/admin/accounts")
    row = page.locator(f'li[data-artist="{artist_id}"]')
    assert "never" in row.inner_text()
    field = row.get_by_label("Email for Nina Vale")
    field.fill("not an address")
    row.get_by_role("button", name="Invite").click()
    error = page.locator(f"#invite-{artist_id}-error")
    assert error.is_visible() and "email" in error.inner_text().lower()
    assert inbox.messages == []
    shots(page, "invite-refused")

    page.locator(f'li[data-artist="{artist_id}"]').get_by_label("Email for Nina Vale").fill(
        "nina@example.com"
    )
    page.locator(f'li[data-artist="{artist_id}"]').get_by_role("button", name="Invite").click()
    assert (
        "Sent Nina Vale an invitation at nina@example.com" in page.locator(".notice").inner_text()
    )
    # the page fits a phone: nothing wider than the screen but the scrolling table
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _no_csp_violations(page)
    shots(page, "invited")

    page.goto(live_url + "/dashboard/admin/audit")
    first = page.locator("#audit tbody tr").first
    assert first.get_attribute("data-action") == "artist.invited"
    assert first.get_attribute("data-target") == artist_id
    assert "nina@example.com" in first.inner_text()
    _no_csp_violations(page)
    shots(page, "audit-log")

    [link] = links_in(inbox.wait_for(1)[0])
    artist_page = new_page()
    artist_page.set_viewport_size({"width": 390, "height": 844})
    artist_page.goto(link)
    artist_page.get_by_role("button", name="Sign in").click()
    artist_page.wait_for_url(f"{live_url}/dashboard/artists/{artist_id}")
    assert artist_page.get_by_role("heading", name="Nina Vale").first.is_visible()
    artist_page.goto(link)  # used: it says so
    assert "already used or has expired" in artist_page.locator("main").inner_text()
