"""An artist's content in headless Chromium: from signing in to the content page, adding
an item (a bad form first: told what is wrong, nothing written), giving it a reward
plan of its own and reading it back in words, to copying the join page link and
opening it."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from royalties.models import Content, RewardPlan
from tests.web.conftest import BROWSER_MARKS, _no_csp_violations, _sign_in

pytestmark = BROWSER_MARKS


def _read(session: Any, query: Any) -> Any:
    """One value, read without leaving a transaction open (SQLite's write lock)."""
    session.rollback()
    value = session.scalar(query)
    session.rollback()
    return value


def test_an_artist_adds_an_item_gives_it_a_plan_and_copies_the_join_link(
    new_page: Any,
    live_url: str,
    world: Any,
    app: Any,
    session: Any,
    shots: Any,
) -> None:
    app.config["PUBLIC_BASE_URL"] = live_url  # so the copied join link opens here
    artist = world.artist
    page = new_page(clipboard=True)
    _sign_in(page, live_url, artist.key, f"/dashboard/artists/{artist.id}")
    page.get_by_role("link", name="Manage content and your join page").click()
    page.wait_for_url(f"{live_url}/dashboard/artists/{artist.id}/content")
    assert page.locator("#content-items tbody tr").count() == 2
    items = select(func.count()).select_from(Content).where(Content.artist_id == artist.id)
    before = _read(session, items)

    # a bad form: the messages next to the fields, what was typed kept, nothing written
    form = page.locator("#add-content")
    form.get_by_label("Title").fill("")
    form.get_by_label("Price, in minor units").fill("-5")
    form.get_by_label("Currency").fill("dollars")
    form.get_by_label("Storefront URL").fill("https://shop.test/new-single")
    with page.expect_navigation() as navigation:
        page.locator("#add-content-button").click()
    assert navigation.value is not None and navigation.value.status == 422
    assert "between 1 and 300" in page.locator("#content-title-error").inner_text()
    assert page.locator("#content-price-error").is_visible()
    assert "currency" in page.locator("#content-currency-error").inner_text().lower()
    assert page.locator("#content-title").get_attribute("aria-invalid") == "true"
    assert page.locator("#content-storefront_url").input_value().endswith("/new-single")
    assert _read(session, items) == before
    shots(page, "artist-content-error")

    # fixed, it is added and its page opens, following the artist's plan
    form.get_by_label("Title").fill("Night Ferry")
    form.get_by_label("Price, in minor units").fill("1250")
    form.get_by_label("Currency").fill("USD")
    page.locator("#add-content-button").click()
    page.wait_for_url(re.compile(r".*/dashboard/content/cnt_\w+$"))
    assert page.get_by_text("Added “Night Ferry”.").is_visible()
    assert page.locator("#item-heading").inner_text() == "Night Ferry"
    assert "follows the artist's plan" in page.locator("#plan-source").inner_text()
    assert _read(session, items) == before + 1
    content_id = page.url.rsplit("/", 1)[1]

    # a plan of its own: 10% to level 1, 2.5% to level 2, no deeper levels, 14 days' hold
    page.fill("#rate-1", "1000")
    page.fill("#rate-2", "250")
    for level in (3, 4, 5):
        page.fill(f"#rate-{level}", "")
    page.fill("#hold-days", "14")
    page.get_by_role("button", name="Save as new version").click()
    page.wait_for_url(re.compile(rf".*/dashboard/content/{content_id}#plan$"))
    assert page.get_by_text("Saved this item's plan, version 1.").is_visible()
    assert "has its own plan, version 1" in page.locator("#plan-source").inner_text()
    assert page.locator("#plan-words li").all_inner_texts() == [
        "10% of every sale you bring in with your link",
        "2.5% of every sale a fan you brought in brings in",
        "Rewards become available 14 days after the sale (the refund window), then they "
        "are paid out.",
    ]
    plan = select(RewardPlan.level_rates_bps).where(RewardPlan.content_id == content_id)
    assert list(_read(session, plan)) == [1000, 250]
    shots(page, "content-item-plan")

    # the join link: the copy button puts it on the clipboard, and it opens the join page
    page.get_by_role("link", name="All content").click()
    page.wait_for_url(f"{live_url}/dashboard/artists/{artist.id}/content")
    join_url = f"{live_url}/join/{artist.id}"
    assert page.locator("#join-url").inner_text() == join_url
    button = page.get_by_role("button", name="Copy your join page link")
    button.click()
    page.wait_for_selector("button[data-copied]")
    assert page.evaluate("navigator.clipboard.readText()") == join_url
    assert button.inner_text() == "Copied"
    assert page.locator("[data-copy-status]").inner_text() == "Link copied to the clipboard."
    shots(page, "artist-content")
    _no_csp_violations(page)
    page.goto(page.evaluate("navigator.clipboard.readText()"))
    assert "Nina Vale" in page.locator("#join-heading").inner_text()
    assert "Night Ferry" in page.locator("#catalogue").inner_text()
    _no_csp_violations(page)
