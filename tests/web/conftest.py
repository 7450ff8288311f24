"""Dashboard fixtures: a small world made through the real API, and signed-in clients."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from royalties.db import utcnow
from royalties.models import Purchase, Reward
from tests.conftest import create_test_app
from tests.helpers import Actor, ApiDriver, buy, refund, share
from tests.smtp import Inbox, smtp_server

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def _smtp() -> Iterator[tuple[str, Inbox]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def inbox(_smtp: tuple[str, Inbox]) -> Inbox:
    """What the test suite's SMTP server received during this test."""
    _smtp[1].clear()
    return _smtp[1]


@pytest.fixture
def make_app(engine: Engine, db_url: str, inbox: Inbox, _smtp: tuple[str, Inbox]) -> Any:
    """Apps that mail through the suite's SMTP server (config overrides as keywords);
    each one's outbox is drained at the end, so no message lands in the next test."""
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        overrides.setdefault("SMTP_URL", _smtp[0])
        app = create_test_app(engine, db_url, **overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        assert app.extensions["royalties.mail"].flush(10), "mail still queued"


@pytest.fixture
def app(make_app: Any) -> Flask:
    """The dashboard's app: mail goes to the suite's SMTP server (``inbox``)."""
    return make_app()  # type: ignore[no-any-return]


@dataclass
class Cast:
    """Who signs in: an admin, two artists, a storefront and two fans (ann sponsors bob)."""

    admin: Actor
    artist: Actor
    other_artist: Actor
    shop: Actor
    fans: dict[str, Actor]


@dataclass
class World(Cast):
    """The cast with content, share links, clicks, sales and refunds."""

    song: dict[str, Any] = field(default_factory=dict)
    book: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    purchases: list[dict[str, Any]] = field(default_factory=list)


def build_cast(api: ApiDriver) -> Cast:
    ann = api.fan("ann")
    return Cast(
        api.admin,
        api.artist("Nina Vale"),
        api.artist("Other Artist"),
        api.storefront("Record Shop"),
        {"ann": ann, "bob": api.fan("bob", ref=ann.id)},
    )


def _content(api: ApiDriver, artist: Actor, title: str, kind: str, price: int) -> dict[str, Any]:
    return api.ok(  # type: ignore[no-any-return]
        "POST",
        "/v1/content",
        artist,
        {
            "title": title,
            "kind": kind,
            "price": price,
            "currency": "usd",
            "storefront_url": f"https://shop.test/{kind}",
        },
        201,
    )


def build_world(api: ApiDriver, session: Session) -> World:
    """An artist with two items, a referral tree of eight fans, share links, clicks, eleven
    sales (some direct, some through links) spread over the last nine days, and refunds."""
    artist = api.artist("Nina Vale")
    other = api.artist("Other Artist")
    shop = api.storefront("Record Shop")
    song = _content(api, artist, "Midnight Drive", "track", 1999)
    book = _content(api, artist, "Neon Atlas", "book", 4999)
    _content(api, other, "Someone Else's Song", "track", 999)

    fans: dict[str, Actor] = {}
    for handle, sponsor in [
        ("ann", None),
        ("bob", "ann"),
        ("cyd", "bob"),
        ("dee", "cyd"),
        ("eve", "dee"),
        ("fay", "eve"),
        ("gus", "bob"),
        ("hal", "gus"),
    ]:
        fans[handle] = api.fan(handle, ref=fans[sponsor].id if sponsor else None)
    links = {h: share(api, fans[h], song["id"]) for h in ("ann", "bob", "eve", "fay", "hal")}
    links["bob-book"] = share(api, fans["bob"], book["id"])
    for code, clicks in [(links["bob"], 3), (links["fay"], 2), (links["ann"], 1)]:
        for _ in range(clicks):
            assert api.call("GET", f"/l/{code}").status_code == 302

    world = World(api.admin, artist, other, shop, fans, song=song, book=book, links=links)
    sales = [
        (song, "fay", "b1@example.com", 8),
        (song, "fay", "b2@example.com", 7),
        (book, "bob-book", "b3@example.com", 7),
        (song, "bob", "b4@example.com", 5),
        (song, "hal", "b5@example.com", 4),
        (song, None, "b6@example.com", 4),
        (book, "eve", "b7@example.com", 3),
        (song, "ann", "b8@example.com", 2),
        (book, None, "b9@example.com", 1),
        (song, "fay", "b10@example.com", 0),
        (song, "bob", "b11@example.com", 0),
    ]
    for item, via, email, _days in sales:
        code = links[via] if via else None
        world.purchases.append(buy(api, shop, item, {"email": email}, share_code=code))
    refund(api, shop, world.purchases[1]["id"], 1000)
    refund(api, shop, world.purchases[4]["id"], world.purchases[4]["amount"])
    # Spread the sales over the last days, so the charts have a shape (recorded "now").
    now = utcnow()
    for purchase, (*_, days) in zip(world.purchases, sales, strict=True):
        moment = now - timedelta(days=days, hours=1)
        session.execute(
            update(Purchase).where(Purchase.id == purchase["id"]).values(created_at=moment)
        )
        session.execute(
            update(Reward).where(Reward.purchase_id == purchase["id"]).values(created_at=moment)
        )
    session.commit()
    return world


@pytest.fixture
def world(api: ApiDriver, session: Session) -> World:
    return build_world(api, session)


@pytest.fixture
def cast(api: ApiDriver) -> Cast:
    return build_cast(api)


class Browser:
    """A dashboard visitor: the Flask test client with its cookie jar and CSRF token."""

    def __init__(self, app: Flask) -> None:
        self.client: FlaskClient = app.test_client()
        self.token = ""

    def get(self, path: str, **kw: Any) -> Any:
        response = self.client.get(path, **kw)
        match = CSRF_RE.search(response.get_data(as_text=True))
        if match:
            self.token = match.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.token)
        return self.client.post(path, data=form)

    def sign_in(self, key: str, **form: str) -> Any:
        """Sign in through the form; the token is then the new session's (it rotates)."""
        self.get("/dashboard/login")
        response = self.post("/dashboard/login", {"api_key": key, **form})
        if response.status_code == 302:
            self.get(response.headers["Location"])
        return response


@pytest.fixture
def visitor(app: Flask) -> Browser:
    return Browser(app)


@pytest.fixture
def make_visitor(app: Flask) -> Any:
    return lambda: Browser(app)


# -- headless Chromium (Debian's, through Playwright), for the browser tests -------------

CHROMIUM = "/usr/bin/chromium"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records CSP violations in the page (Playwright's init scripts are exempt from CSP).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM} (CI installs Debian's chromium; "
        "locally: apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


# -- the browser tests' server, pages and screenshots ------------------------------------


def _with_csp(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """Add the policy to HTML responses that do not carry one yet."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            names = {name.lower() for name, _ in headers}
            html = any(n.lower() == "content-type" and "text/html" in v for n, v in headers)
            if html and "content-security-policy" not in names:
                headers = [*headers, ("Content-Security-Policy", CSP)]
            return start_response(status, headers, *exc)

        return wsgi_app(environ, start)

    return app


@pytest.fixture
def live_url(app: Flask, world: World) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, _with_csp(app.wsgi_app), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def shots(tmp_path: Path) -> Callable[[Any, str], Path]:
    target = os.environ.get("DASHBOARD_SCREENSHOTS")

    def take(page: Any, name: str, *, full_page: bool = True) -> Path:
        """``page`` may be a locator (then its element) with ``full_page=False``."""
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), **({"full_page": True} if full_page else {}))
        assert path.stat().st_size > 20_000, f"{name}: suspiciously small screenshot"
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(target) / path.name)
        return path

    return take


@pytest.fixture
def new_page(chromium: Any, live_url: str) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []
    problems: list[str] = []

    def make(clipboard: bool = False, viewport: dict[str, int] | None = None) -> Any:
        context = chromium.new_context(viewport=viewport or {"width": 1280, "height": 900})
        if clipboard:
            context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_url)
        context.add_init_script(WATCH_CSP)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", lambda msg: _console(msg, problems))
        return page

    yield make
    for context in contexts:
        context.close()
    assert problems == []


def _console(message: Any, problems: list[str]) -> None:
    # The 401/404/422 pages the tests ask for are logged as failed loads; the stylesheet
    # and the script are proven loaded by their effects instead.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        problems.append(f"console {message.type}: {message.text}")


def _sign_in(page: Any, base: str, key: str, path: str) -> None:
    page.goto(base + path)
    assert "/dashboard/login" in page.url
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + path)


def _no_csp_violations(page: Any) -> None:
    assert page.evaluate("window.__csp") == []
    header = page.evaluate("document.contentType")
    assert header == "text/html"
