"""Every dashboard page at a phone's width (390 x 844 CSS pixels), in headless Chromium,
as the role that uses it: the page never scrolls sideways (a wide table may scroll
inside its own box), and every form control is on screen and tall enough to tap.

``PAGES`` is the list to extend when a page is added: ``(role, path)``, the path a
format string over the world (``{artist}``, ``{fan}``, ``{item}``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import buy, share
from tests.web.conftest import BROWSER_MARKS, _no_csp_violations

pytestmark = BROWSER_MARKS

WIDTH, HEIGHT = 390, 844
MIN_TAP = 40  # CSS pixels: a control any shorter is hard to hit with a thumb

PAGES: list[tuple[str | None, str]] = [
    (None, "/"),
    (None, "/guide/architecture"),
    (None, "/dashboard/login"),
    (None, "/join/{artist}"),
    (None, "/docs"),
    ("fan", "/dashboard/fans/{fan}"),
    ("artist", "/dashboard/artists/{artist}"),
    ("artist", "/dashboard/artists/{artist}/content"),
    ("artist", "/dashboard/content/{item}"),
    ("admin", "/dashboard/"),
    ("admin", "/dashboard/review"),
    ("admin", "/dashboard/admin/accounts"),
    ("admin", "/dashboard/admin/keys"),
    ("admin", "/dashboard/admin/payouts"),
    ("admin", "/dashboard/admin/audit"),
]

# Controls a person taps: everything focusable in a form, links styled as buttons.
_CONTROLS = """
() => Array.from(document.querySelectorAll(
  'input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea, ' +
  'button, a.button'
)).filter(el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden')
  .filter(el => !el.closest('.visually-hidden'))
  .map(el => {
    const box = el.getBoundingClientRect();
    return {
      what: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
            (el.innerText || el.name || el.type || '').trim().slice(0, 30) + '"',
      left: box.left + window.scrollX, right: box.right + window.scrollX,
      height: box.height, width: box.width, scrolls: !!el.closest('.table-wrap'),
    };
  })
"""

# Elements that stick out of the page's width (what makes it scroll sideways), ignoring
# those inside a box that scrolls by itself.
_WIDE = """
(width) => Array.from(document.querySelectorAll('body *'))
  .filter(el => el.getBoundingClientRect().right > width + 1)
  .filter(el => !el.parentElement.closest('.table-wrap, .chart-scroll, svg'))
  .slice(0, 5)
  .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
             (el.className && typeof el.className === 'string' ? '.' + el.className : ''))
"""


@pytest.fixture
def held(world: Any, api: Any) -> None:
    """A held reward in the review queue: five sign-ups from one address flag their
    sponsor, whose link then sells."""
    sponsor = api.fan("farmer")
    for i in range(5):
        response = api.client.post(
            "/v1/fans",
            json={"handle": f"farmhand{i}", "ref": sponsor.id},
            environ_base={"REMOTE_ADDR": "192.0.2.7"},
        )
        assert response.status_code == 201
    code = share(api, sponsor, world.song["id"])
    buy(api, world.shop, world.song, {"email": "held@example.com"}, share_code=code)
    assert api.ok("GET", "/v1/review", api.admin)["items"], "nothing held"


@pytest.fixture
def phone(new_page: Any, live_url: str) -> Any:
    """A page at a phone's width, signed in with ``key`` (or not, for None)."""

    def open_as(key: str | None) -> Any:
        page = new_page(viewport={"width": WIDTH, "height": HEIGHT})
        if key:
            page.goto(live_url + "/dashboard/login")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state()
            assert "/dashboard/login" not in page.url
        return page

    return open_as


def test_every_dashboard_page_is_usable_at_390_pixels(
    phone: Any,
    live_url: str,
    world: Any,
    held: None,
    shots: Any,
) -> None:
    keys = {"fan": world.fans["bob"].key, "artist": world.artist.key, "admin": world.admin.key}
    names = {"artist": world.artist.id, "fan": world.fans["bob"].id, "item": world.song["id"]}
    pages = {role: phone(keys.get(role or "")) for role in {role for role, _ in PAGES}}
    failures: list[str] = []
    for role, template in PAGES:
        path = template.format(**names)
        page = pages[role]
        response = page.goto(live_url + path)
        assert response is not None and response.status == 200, (role, path)
        assert page.evaluate("window.innerWidth") == WIDTH
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > WIDTH + 1:
            wide = page.evaluate(_WIDE, WIDTH)
            failures.append(f"{path} ({role}): {width} px wide, because of {wide}")
        controls = page.evaluate(_CONTROLS)
        if not template.startswith(("/docs", "/guide/")):  # pages to read have no form
            assert controls, f"{path}: no form control found"
        for control in controls:
            if control["height"] < MIN_TAP:
                failures.append(f"{path}: {control['what']} is {control['height']:.0f} px tall")
            inside = control["left"] >= 0 and control["right"] <= WIDTH + 1
            if not inside and not control["scrolls"]:  # a wide table's own scroll is fine
                failures.append(f"{path}: {control['what']} is off the screen")
        _no_csp_violations(page)
        name = template.strip("/").replace("/", "-").replace("{", "").replace("}", "")
        shots(page, f"390-{role or 'anon'}-{name}")
    assert not failures, "\n".join(failures)
