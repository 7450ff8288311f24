"""The dashboard in a real browser: headless Chromium (Playwright) against the app served
over HTTP on 127.0.0.1, on a migrated database filled through the API.

Every page is checked under the Content-Security-Policy the app sends for HTML (added
here too if the app does not send it yet), so an inline script or style would break
the test. Screenshots go to the test's tmp_path, and also to ``$DASHBOARD_SCREENSHOTS``
when that names a directory (to look at them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from royalties.db import utcnow
from royalties.models import RewardPlan
from tests.helpers import buy, share
from tests.web.conftest import BROWSER_MARKS, _content, _no_csp_violations, _sign_in

pytestmark = BROWSER_MARKS


def _plans(session: Any, artist_id: str) -> list[tuple[int, list[int], int]]:
    session.rollback()
    rows = session.execute(
        select(RewardPlan.version, RewardPlan.level_rates_bps, RewardPlan.hold_days)
        .where(RewardPlan.scope == f"artist:{artist_id}")
        .order_by(RewardPlan.version)
    ).all()
    session.rollback()
    return [(v, list(r), h) for v, r, h in rows]


def _box(page: Any, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, selector
    return box  # type: ignore[no-any-return]


def test_an_artist_sees_charts_and_the_graph_and_changes_the_plan_in_a_browser(
    new_page, live_url, world, session, shots
):
    page = new_page()
    path = f"/dashboard/artists/{world.artist.id}"
    _sign_in(page, live_url, world.artist.key, path)
    assert page.get_by_role("heading", name="Nina Vale").is_visible()
    # the stylesheet is applied (served by the app itself, same origin)
    assert page.evaluate("getComputedStyle(document.querySelector('.card')).borderRadius") == (
        "10px"
    )

    # charts and the referral picture are drawn, with real size on screen
    for chart in ("#chart-revenue", "#chart-sales", "#chart-rewards", "#referral-graph"):
        box = _box(page, chart)
        assert box["width"] > 250 and box["height"] > 100, chart
    assert page.locator("#chart-revenue path").count() >= 2
    assert page.locator("#chart-revenue circle").count() >= 2
    _box(page, "#chart-revenue path.line")
    assert page.locator("#chart-sales rect").count() >= 3
    _box(page, "#chart-sales rect")
    assert page.locator("#chart-rewards rect").count() >= 2
    assert page.locator("#referral-graph circle").count() >= 8
    assert page.locator("#referral-graph .edges path").count() >= 7
    assert page.locator("#referral-graph circle.broker").count() >= 1
    _box(page, "#referral-graph circle.broker")
    assert page.locator("#top-fans tbody tr").count() >= 3
    assert page.locator("#roi dd").first.inner_text().endswith("USD")
    shots(page, "artist")

    # client-side validation: a plan over 50% shows the message and is not sent
    page.fill("#rate-1", "3000")
    page.fill("#rate-2", "2500")
    error = page.locator("#plan-error")
    assert error.is_visible()
    assert "5675 bps" in error.inner_text()
    assert page.locator("#rate-1").get_attribute("aria-invalid") == "true"
    page.get_by_role("button", name="Save as new version").click()
    page.wait_for_timeout(300)
    assert page.url == live_url + path
    assert error.is_visible()
    assert _plans(session, world.artist.id) == [(1, [500, 200, 100, 50, 25], 30)]
    page.fill("#hold-days", "400")
    assert page.locator("#hold-days").get_attribute("aria-invalid") == "true"
    shots(page, "artist-plan-client-error")

    # a valid plan goes through and becomes version 2
    page.fill("#rate-2", "1000")
    page.fill("#hold-days", "7")
    assert error.is_hidden()
    assert "4175 bps" in page.locator("[data-plan-total]").inner_text()
    page.get_by_role("button", name="Save as new version").click()
    page.wait_for_url(live_url + path + "#plan")
    assert page.get_by_text("Saved reward plan version 2.").is_visible()
    assert _plans(session, world.artist.id)[-1] == (2, [3000, 1000, 100, 50, 25], 7)

    # with the script bypassed (form.submit() fires no submit event) the server refuses
    page.fill("#rate-1", "6000")
    assert error.is_visible()
    with page.expect_navigation() as navigation:
        page.evaluate("document.getElementById('plan-form').submit()")
    assert navigation.value.status == 422
    assert error.is_visible()
    assert "rates sum to 7175 bps" in error.inner_text()
    assert page.locator("#rate-1").input_value() == "6000"
    assert len(_plans(session, world.artist.id)) == 2
    shots(page, "artist-plan-server-error")
    _no_csp_violations(page)


def test_a_fan_copies_a_share_link_and_downloads_the_statement_in_a_browser(
    new_page, live_url, world, shots
):
    page = new_page(clipboard=True)
    bob = world.fans["bob"]
    path = f"/dashboard/fans/{bob.id}"
    _sign_in(page, live_url, bob.key, path)
    assert page.get_by_role("heading", name="bob").is_visible()
    assert page.locator("#share-links tbody tr").count() == 2
    assert page.locator(".balances .stat").count() == 3
    assert page.locator("#earnings-by-level tbody tr").count() == 4
    assert page.locator("#earnings-by-content tbody tr").count() == 2

    code = world.links["bob"]
    row = page.locator(f'tr[data-code="{code}"]')
    button = row.get_by_role("button", name="Copy the link for Midnight Drive")
    button.click()
    page.wait_for_selector(f'tr[data-code="{code}"] button[data-copied]')
    url = f"http://127.0.0.1:8000/l/{code}"
    assert page.evaluate("navigator.clipboard.readText()") == url
    assert button.inner_text() == "Copied"
    shots(page, "fan")

    with page.expect_download() as download:
        page.locator("#statement-link").click()
    text = Path(download.value.path()).read_text()
    assert text.count("\n") >= 2 and download.value.suggested_filename.endswith(".csv")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_url + "/dashboard/login")
    assert page.get_by_text("You have signed out.").is_visible()
    page.goto(live_url + path)
    assert "/dashboard/login" in page.url
    _no_csp_violations(page)


def test_an_admin_home_the_login_error_and_an_error_page_look_right(
    new_page, live_url, world, shots
):
    page = new_page()
    page.goto(live_url + "/dashboard/login")
    page.get_by_label("API key").fill("rk_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That API key is unknown")
    shots(page, "login-error")
    _sign_in(page, live_url, world.admin.key, "/dashboard/")
    page.get_by_label("Fan id").fill(world.fans["fay"].id)
    page.get_by_role("button", name="Open fan").click()
    page.wait_for_url(f"{live_url}/dashboard/fans/{world.fans['fay'].id}")
    page.goto(live_url + "/dashboard/")
    shots(page, "admin")
    response = page.goto(live_url + "/dashboard/artists/art_nope")
    assert response is not None and response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    _no_csp_violations(page)


def test_the_api_reference_reads_well_under_the_csp_and_with_javascript_off(
    new_page, chromium, live_url, shots
):
    page = new_page()
    response = page.goto(live_url + "/docs")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # docs.css is applied: the method badge is coloured, the operation a card
    badge = page.locator("#post-v1-purchases .op-head .m")
    assert badge.inner_text() == "POST"
    assert (
        page.evaluate(
            "getComputedStyle(document.querySelector('#post-v1-purchases .m')).backgroundColor"
        )
        == "rgb(46, 125, 50)"
    )
    purchase = page.locator("#post-v1-purchases")
    assert purchase.locator("td.name code", has_text="Idempotency-Key").is_visible()
    assert purchase.locator(".description code", has_text="share_code").is_visible()
    assert purchase.locator(".description li").count() == 3
    # the table of contents jumps to an operation
    page.locator(".toc a[href='#post-v1-webhooks-stripe']").click()
    assert page.url.endswith("#post-v1-webhooks-stripe")
    assert page.locator("#post-v1-webhooks-stripe").get_by_text("Stripe-Signature").is_visible()
    shots(purchase, "docs-purchase", full_page=False)  # an element: just that operation
    page.goto(live_url + "/docs")
    shots(page, "docs", full_page=False)
    _no_csp_violations(page)
    # no request left for another origin
    assert page.evaluate(
        "performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))"
    )

    # with JavaScript off the page is the same: rendered on the server
    context = chromium.new_context(
        java_script_enabled=False, viewport={"width": 390, "height": 844}
    )
    try:
        narrow = context.new_page()
        narrow.goto(live_url + "/docs#post-v1-purchases")
        op = narrow.locator("#post-v1-purchases")
        assert op.locator("td.name code", has_text="Idempotency-Key").is_visible()
        assert op.locator("#post-v1-purchases-201 code", has_text="artist_share").is_visible()
        width = narrow.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"the page scrolls sideways at 390 px: {width}"
        shots(narrow, "docs-390-no-js", full_page=False)
    finally:
        context.close()


def test_an_artist_with_one_day_of_sales_sees_readable_charts_in_a_browser(
    new_page, live_url, world, api, shots
):
    track = _content(api, world.other_artist, "One Day Single", "track", 1500)
    code = share(api, world.fans["ann"], track["id"])
    for n in range(2):
        buy(api, world.shop, track, {"email": f"oneday{n}@example.com"}, share_code=code)
    page = new_page()
    path = f"/dashboard/artists/{world.other_artist.id}"
    _sign_in(page, live_url, world.other_artist.key, path)
    stem = _box(page, "#chart-revenue path.line")
    assert stem["height"] > 100, "the day's revenue stands up from the baseline"
    bar = _box(page, "#chart-sales .bars rect")
    assert 10 < bar["width"] < 60 and bar["height"] > 50
    assert page.locator("#chart-sales text.value").text_content() == "2"
    assert page.locator("#chart-revenue text.value").text_content() == "30.00"
    today = utcnow().date().isoformat()
    assert page.locator("#chart-sales text", has_text=today).count() == 1
    shots(page, "artist-one-day")
    _no_csp_violations(page)


def test_a_fan_signs_in_from_the_emailed_link_in_a_browser(
    new_page, live_url, app, api, inbox, shots
):
    """Email typed on the login page, the mail read from the suite's SMTP server, the link
    opened, Sign in pressed: the fan's page. The used link then says so."""
    from tests.smtp import links_in

    fan = api.fan("zoe", email="zoe@example.com")
    app.config["PUBLIC_BASE_URL"] = live_url  # links point at this server
    page = new_page()
    page.goto(live_url + "/dashboard/login")
    page.get_by_label("Email address").fill("zoe@example.com")
    page.get_by_role("button", name="Email me a link").click()
    notice = page.locator("#email-notice")
    assert "a sign-in link is on its way" in notice.inner_text()
    _no_csp_violations(page)
    shots(page, "sign-in-email-sent")

    [link] = links_in(inbox.wait_for(1)[0])
    assert link.startswith(live_url + "/dashboard/login/email/")
    page.goto(link)
    assert page.get_by_role("heading", name="Sign in").is_visible()
    _no_csp_violations(page)
    shots(page, "sign-in-link")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_url}/dashboard/fans/{fan.id}")
    assert page.get_by_role("heading", name="zoe").is_visible()
    _no_csp_violations(page)

    page.goto(link)
    assert page.get_by_role("heading", name="This link no longer works").is_visible()
    assert "already used or has expired" in page.locator("main").inner_text()
    shots(page, "sign-in-link-used")
