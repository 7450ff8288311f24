"""Signing in by email through the Flask test client: the link is mailed through a real
SMTP server (aiosmtpd on 127.0.0.1), read from the message it received, and used once."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from royalties.db import utcnow
from royalties.models import Fan, SignInLink
from royalties.sign_in import hash_token
from tests.conftest import ON_POSTGRES, create_test_app
from tests.helpers import row_counts
from tests.smtp import body, links_in
from tests.web.conftest import Browser

ADDR_A = "198.51.100.7"
ADDR_B = "203.0.113.9"
SENT = "If an account uses that address, a sign-in link is on its way."
REFUSED = "already used or has expired"


def ask(browser: Browser, email: str, *, addr: str | None = None):
    if addr:
        browser.client.environ_base["REMOTE_ADDR"] = addr
    browser.get("/dashboard/login")
    return browser.post("/dashboard/login/email", {"email": email})


def use(browser: Browser, link: str):
    """Open the link as a person does: the page, then its Sign in button."""
    path = link.split("://", 1)[1].partition("/")[2]
    page = browser.get("/" + path)
    if page.status_code != 200:
        return page
    assert 'type="submit"' in page.get_data(as_text=True)
    return browser.post("/" + path)


@pytest.fixture
def ann(api):
    return api.fan("ann", email="Ann@Example.com")


def test_a_fan_signs_in_from_the_emailed_link_and_lands_on_its_page(app, make_visitor, ann, inbox):
    visitor = make_visitor()
    answer = ask(visitor, "  ANN@example.com ")
    assert answer.status_code == 200 and SENT in answer.get_data(as_text=True)

    [message] = inbox.wait_for(1)
    assert message["To"] == "ann@example.com"
    assert message["From"] == app.config["MAIL_FROM"]
    assert message["Subject"] == "Your sign-in link"
    assert "15 minutes" in body(message) and "fan ann" in body(message)
    [link] = links_in(message)
    # written with PUBLIC_BASE_URL, whatever Host the request carried
    assert link.startswith(app.config["PUBLIC_BASE_URL"] + "/dashboard/login/email/")

    # opening the link changes nothing until Sign in is pressed (mail scanners only GET)
    reader = make_visitor()
    path = "/" + link.split("://", 1)[1].partition("/")[2]
    for _ in range(3):
        page = reader.get(path)
        assert page.status_code == 200 and "Sign in" in page.get_data(as_text=True)
    signed_in = reader.post(path)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == f"/dashboard/fans/{ann.id}"
    cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    fan_page = reader.get(signed_in.headers["Location"])
    assert fan_page.status_code == 200 and "ann" in fan_page.get_data(as_text=True)
    # the visitor who asked is not signed in by it: only the link's holder is
    assert visitor.get(f"/dashboard/fans/{ann.id}").status_code == 302


def test_the_link_works_once(app, make_visitor, ann, inbox):
    ask(make_visitor(), "ann@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    first = make_visitor()
    assert use(first, link).status_code == 302
    for again in (first, make_visitor()):
        refused = use(again, link)
        assert refused.status_code == 410
        text = refused.get_data(as_text=True)
        assert REFUSED in text and "Ask for a new one" in text
    # a POST straight to the used link is refused too
    late = make_visitor()
    late.get("/dashboard/login")
    refused = late.post(link.split(app.config["PUBLIC_BASE_URL"])[1])
    assert refused.status_code == 410 and REFUSED in refused.get_data(as_text=True)
    assert late.get(f"/dashboard/fans/{ann.id}").status_code == 302


def test_the_link_expires_after_15_minutes(app, make_visitor, ann, inbox, session):
    ask(make_visitor(), "ann@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    session.rollback()
    row = session.scalars(select(SignInLink)).one()
    assert row.expires_at - row.created_at == timedelta(minutes=15)
    # fifteen minutes and a second later
    now = utcnow()
    session.execute(
        update(SignInLink).values(
            created_at=now - timedelta(minutes=15, seconds=1), expires_at=now - timedelta(seconds=1)
        )
    )
    session.commit()
    refused = use(make_visitor(), link)
    assert refused.status_code == 410 and REFUSED in refused.get_data(as_text=True)
    session.rollback()
    assert session.scalars(select(SignInLink.used_at)).one() is None


def test_known_and_unknown_addresses_get_the_same_answer_and_unknown_sends_nothing(
    app, visitor, ann, inbox, session
):
    before = row_counts(session)
    unknown = ask(visitor, "nobody@example.com")
    assert app.extensions["royalties.mail"].flush(10)
    assert inbox.messages == [] and inbox.envelopes == []
    assert row_counts(session) == before  # nothing written for an unknown address

    known = ask(visitor, "ann@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.get_data() == unknown.get_data()
    per_request = ("Content-Length", "X-Request-Id")  # a new id each time, whoever asks
    assert {k: v for k, v in known.headers if k not in per_request} == {
        k: v for k, v in unknown.headers if k not in per_request
    }
    assert len(inbox.wait_for(1)) == 1
    assert inbox.envelopes == [("no-reply@localhost", ["ann@example.com"])]


def test_asking_for_a_link_does_not_wait_for_the_mail_server(app, visitor, ann, inbox):
    """A slow server must not make a known address's answer slower than an unknown's."""
    inbox.delay = 2.0
    visitor.get("/dashboard/login")
    timings = {}
    for email in ("nobody@example.com", "ann@example.com"):
        started = time.monotonic()
        assert visitor.post("/dashboard/login/email", {"email": email}).status_code == 200
        timings[email] = time.monotonic() - started
    assert timings["ann@example.com"] < 1.0, timings
    assert len(inbox.wait_for(1, timeout=10)) == 1


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Enter your email address."),
        ("   ", "Enter your email address."),
        ("not-an-email", "does not look like an email address"),
        ("ann@localhost", "does not look like an email address"),
        ("ann @example.com", "does not look like an email address"),
        ("ann@@example.com", "does not look like an email address"),
        ("x" * 250 + "@example.com", "longer than 254 characters"),
    ],
)
def test_bad_input_gets_a_message_and_writes_and_sends_nothing(
    app, visitor, ann, inbox, session, email, message
):
    before = row_counts(session)
    answer = ask(visitor, email)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert message in html and SENT not in html
    assert 'id="email-error"' in html and 'aria-invalid="true"' in html
    assert app.extensions["royalties.mail"].flush(10)
    assert inbox.messages == []
    assert row_counts(session) == before


def test_a_form_without_the_email_field_gets_a_message(visitor, inbox, session):
    before = row_counts(session)
    visitor.get("/dashboard/login")
    answer = visitor.post("/dashboard/login/email", {})
    assert answer.status_code == 422
    assert "Enter your email address." in answer.get_data(as_text=True)
    assert row_counts(session) == before


def test_asking_without_the_csrf_token_is_refused(visitor, ann, inbox, session):
    before = row_counts(session)
    visitor.get("/dashboard/login")
    answer = visitor.post("/dashboard/login/email", {"email": "ann@example.com"}, csrf=False)
    assert answer.status_code == 400
    assert row_counts(session) == before


def test_the_token_is_stored_hashed(app, make_visitor, ann, inbox, session, db_url):
    ask(make_visitor(), "ann@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    token = link.rsplit("/", 1)[1]
    session.rollback()
    row = session.scalars(select(SignInLink)).one()
    assert row.token_hash == hash_token(token) and len(row.token_hash) == 64
    values = [str(getattr(row, c.key)) for c in SignInLink.__table__.columns]
    assert not [v for v in values if token in v]
    session.rollback()
    if not ON_POSTGRES:  # nor anywhere in the database's files
        path = Path(db_url.removeprefix("sqlite:///"))
        for part in (path, path.with_name(path.name + "-wal")):
            if part.exists():
                assert token.encode() not in part.read_bytes()


def test_link_requests_are_rate_limited_per_client_address_with_a_page(
    make_app, ann, inbox, session
):
    app = make_app(RATELIMIT_LOGIN_EMAIL="2/minute")
    asker = Browser(app)
    for n in range(2):
        assert ask(asker, f"someone{n}@example.com", addr=ADDR_A).status_code == 200
    refused = ask(asker, "ann@example.com", addr=ADDR_A)
    assert refused.status_code == 429 and refused.mimetype == "text/html"
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many sign-in links were asked for from your address" in refused.get_data(
        as_text=True
    )
    assert app.extensions["royalties.mail"].flush(10) and inbox.messages == []
    assert ask(Browser(app), "ann@example.com", addr=ADDR_B).status_code == 200
    assert len(inbox.wait_for(1)) == 1


def test_link_requests_are_rate_limited_per_email_known_or_not(make_app, ann, inbox):
    app = make_app(RATELIMIT_LOGIN_EMAIL_RECIPIENT="2/hour")
    for email in ("ann@example.com", "nobody@example.com"):
        for addr in (ADDR_A, ADDR_B):  # from two addresses: the email's own budget
            assert ask(Browser(app), email.upper(), addr=addr).status_code == 200
        refused = ask(Browser(app), email, addr="192.0.2.1")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        text = refused.get_data(as_text=True)
        assert "Too many sign-in links were asked for that email address" in text
    assert app.extensions["royalties.mail"].flush(10)
    assert len(inbox.messages) == 2  # ann's two; none for the refused ones
    assert ask(Browser(app), "other@example.com", addr="192.0.2.1").status_code == 200


def test_without_smtp_url_the_message_with_the_link_is_written_to_the_log(
    engine, db_url, api, caplog
):
    fan = api.fan("cyd", email="cyd@example.com")
    app = create_test_app(engine, db_url, SMTP_URL=None)
    caplog.set_level(logging.INFO, logger="royalties.mail")
    visitor = Browser(app)
    assert SENT in ask(visitor, "cyd@example.com").get_data(as_text=True)
    assert app.extensions["royalties.mail"].flush(10)
    [record] = [r for r in caplog.records if r.name == "royalties.mail"]
    assert record.levelno == logging.INFO and "SMTP_URL is not set" in record.getMessage()
    assert "To: cyd@example.com" in record.getMessage()
    [link] = re.findall(r"http\S+/dashboard/login/email/[0-9a-z]+", record.getMessage())
    assert use(visitor, link).headers["Location"] == f"/dashboard/fans/{fan.id}"


def test_sign_out_ends_the_session_even_for_a_copy_of_its_cookie(app, make_visitor, ann, inbox):
    ask(make_visitor(), "ann@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    visitor = make_visitor()
    use(visitor, link)
    page = f"/dashboard/fans/{ann.id}"
    assert visitor.get(page).status_code == 200
    copy = make_visitor()
    copy.client.set_cookie("session", visitor.client.get_cookie("session").value)
    assert copy.get(page).status_code == 200
    assert visitor.post("/dashboard/logout").status_code == 302
    assert copy.get(page).status_code == 302  # signed out on the server, not only here


def test_a_changed_email_ends_the_sessions_opened_with_the_old_one(
    app, make_visitor, ann, inbox, session
):
    ask(make_visitor(), "ann@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    visitor = make_visitor()
    use(visitor, link)
    assert visitor.get(f"/dashboard/fans/{ann.id}").status_code == 200
    session.rollback()
    session.execute(update(Fan).where(Fan.id == ann.id).values(email="ann@elsewhere.example"))
    session.commit()
    away = visitor.get(f"/dashboard/fans/{ann.id}")
    assert away.status_code == 302 and "/dashboard/login" in away.headers["Location"]
    assert "Your session has ended" in visitor.get(away.headers["Location"]).get_data(as_text=True)


def test_artists_and_admins_sign_in_by_email_too(make_app, make_visitor, api, inbox):
    app = make_app(ADMIN_EMAILS="Ops@Example.com, boss@example.com")
    body_ = api.ok(
        "POST", "/v1/artists", api.admin, {"name": "Nina Vale", "email": "nina@example.com"}, 201
    )
    browser = Browser(app)
    ask(browser, "nina@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    assert use(Browser(app), link).headers["Location"] == f"/dashboard/artists/{body_['id']}"
    ask(browser, "ops@example.com")
    [link] = links_in(inbox.wait_for(2)[1])
    admin = Browser(app)
    assert use(admin, link).headers["Location"] == "/dashboard/"
    assert admin.get("/dashboard/").status_code == 200


def test_an_address_used_by_a_fan_and_an_artist_gets_a_link_for_each(make_app, api, inbox):
    app = make_app()
    fan = api.fan("dee", email="dee@example.com")
    artist = api.ok(
        "POST", "/v1/artists", api.admin, {"name": "Dee Sings", "email": "DEE@example.com"}, 201
    )
    ask(Browser(app), "dee@example.com")
    [message] = inbox.wait_for(1)
    text = body(message)
    assert "artist Dee Sings" in text and "fan dee" in text
    landings = {use(Browser(app), link).headers["Location"] for link in links_in(message)}
    assert landings == {f"/dashboard/fans/{fan.id}", f"/dashboard/artists/{artist['id']}"}


def test_an_artists_email_is_unique(api):
    api.ok("POST", "/v1/artists", api.admin, {"name": "A", "email": "same@example.com"}, 201)
    taken = api.call("POST", "/v1/artists", api.admin, {"name": "B", "email": "Same@Example.com"})
    assert taken.status_code == 409


def test_the_session_cookie_is_secure_when_configured(make_app, api, inbox):
    fan = api.fan("eve", email="eve@example.com")
    app = make_app(SESSION_COOKIE_SECURE=True)
    ask(Browser(app), "eve@example.com")
    [link] = links_in(inbox.wait_for(1)[0])
    browser = Browser(app)
    path = "/" + link.split("://", 1)[1].partition("/")[2]
    browser.get(path, base_url="https://localhost")
    signed_in = browser.client.post(
        path, data={"csrf_token": browser.token}, base_url="https://localhost"
    )
    assert signed_in.headers["Location"] == f"/dashboard/fans/{fan.id}"
    cookie = signed_in.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_malformed_or_unknown_token_gets_the_same_page(visitor):
    for token in ("0" * 32, "short", "x" * 300, "UPPERCASE" * 4):
        page = visitor.get(f"/dashboard/login/email/{token}")
        assert page.status_code == 410 and REFUSED in page.get_data(as_text=True)


def test_a_password_is_never_sent_to_a_server_without_tls(make_app, _smtp, api, inbox, caplog):
    api.fan("fay", email="fay@example.com")
    app = make_app(SMTP_URL=_smtp[0].replace("smtp://", "smtp://mailer:hunter2@"))
    assert ask(Browser(app), "fay@example.com").status_code == 200
    assert app.extensions["royalties.mail"].flush(10)
    assert inbox.messages == []
    assert "offers no STARTTLS" in caplog.text and "hunter2" not in caplog.text


def test_a_malformed_smtp_url_stops_the_app_from_starting(engine, db_url):
    with pytest.raises(ValueError, match="SMTP_URL") as caught:
        create_test_app(engine, db_url, SMTP_URL="mail://u:hunter2@host")
    assert "hunter2" not in str(caught.value)
