"""Inviting an artist by email: ``POST /v1/artists/{id}/invitation`` and the accounts
page mail the artist a single-use sign-in link through the suite's SMTP server; the
link signs the artist in through the real sign-in pages, once, within
``INVITE_LINK_HOURS``; bad input or a taken address sends and writes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from royalties.db import utcnow
from royalties.models import Artist, OperatorAction, SignInLink
from royalties.sign_in import hash_token
from tests.helpers import row_counts
from tests.smtp import body, links_in
from tests.web.conftest import Browser
from tests.web.test_sign_in_by_email import REFUSED, use


@pytest.fixture
def operator(api, app):
    browser = Browser(app)
    browser.sign_in(api.admin.key)
    return browser


def invite(api, artist_id: str, payload=None, as_=None):
    return api.call("POST", f"/v1/artists/{artist_id}/invitation", as_ or api.admin, payload)


def email_of(api, artist_id: str) -> str | None:
    api.session.rollback()
    email = api.session.scalar(select(Artist.email).where(Artist.id == artist_id))
    api.session.rollback()
    return email


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def test_an_invitation_signs_the_artist_in_once_through_the_sign_in_pages(api, app, inbox):
    artist = api.artist("Nina Vale")
    answer = invite(api, artist.id, {"email": "Nina@Example.com"})
    assert answer.status_code == 202
    sent = answer.get_json()
    assert set(sent) == {"artist_id", "email", "subject", "expires_at"}  # never the token
    assert sent["email"] == "nina@example.com" and email_of(api, artist.id) == "nina@example.com"

    [message] = inbox.wait_for(1)
    assert message["To"] == "nina@example.com" and message["Subject"] == sent["subject"]
    assert "Nina Vale" in body(message) and "72 hours" in body(message)
    [link] = links_in(message)
    assert link.startswith(app.config["PUBLIC_BASE_URL"] + "/dashboard/login/email/")
    assert token_of(link) not in answer.get_data(as_text=True)

    reader = Browser(app)
    signed_in = use(reader, link)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == f"/dashboard/artists/{artist.id}"
    assert "Nina Vale" in reader.get(signed_in.headers["Location"]).get_data(as_text=True)
    again = use(Browser(app), link)  # single use
    assert again.status_code == 410 and REFUSED in again.get_data(as_text=True)

    api.session.rollback()
    [row] = api.session.scalars(
        select(OperatorAction).where(OperatorAction.action == "artist.invited")
    ).all()
    assert (row.target_id, row.actor_role, row.detail) == (
        artist.id,
        "admin",
        {"email": "nina@example.com"},
    )
    api.session.rollback()


def test_without_an_email_it_goes_to_the_address_the_artist_has(api, inbox):
    made = api.ok("POST", "/v1/artists", api.admin, {"name": "Ida", "email": "ida@x.io"}, 201)
    assert invite(api, made["id"]).status_code == 202
    assert invite(api, made["id"], {}).status_code == 202
    assert [m["To"] for m in inbox.wait_for(2)] == ["ida@x.io", "ida@x.io"]


def test_the_link_lives_invite_link_hours_then_is_refused(make_app, session, inbox):
    from tests.helpers import ApiDriver

    app = make_app(INVITE_LINK_HOURS=2)
    api = ApiDriver(app.test_client(), session)
    artist = api.artist()
    assert invite(api, artist.id, {"email": "late@x.io"}).status_code == 202
    first, second = None, None
    [message] = inbox.wait_for(1)
    first = links_in(message)[0]
    assert "2 hours" in body(message)
    row = session.scalar(
        select(SignInLink).where(SignInLink.token_hash == hash_token(token_of(first)))
    )
    assert row.expires_at - row.created_at == timedelta(hours=2)
    session.rollback()
    # an hour on it still works, long past a login link's 15 minutes
    now = utcnow()
    session.execute(
        update(SignInLink)
        .where(SignInLink.token_hash == hash_token(token_of(first)))
        .values(created_at=now - timedelta(hours=1), expires_at=now + timedelta(hours=1))
    )
    session.commit()
    assert use(Browser(app), first).status_code == 302

    assert invite(api, artist.id).status_code == 202
    second = links_in(inbox.wait_for(2)[1])[0]
    session.execute(
        update(SignInLink)
        .where(SignInLink.token_hash == hash_token(token_of(second)))
        .values(
            created_at=now - timedelta(hours=2, seconds=1), expires_at=now - timedelta(seconds=1)
        )
    )
    session.commit()
    assert use(Browser(app), second).status_code == 410


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"email": "not an address"}, 422),
        ({"email": "a" * 250 + "@x.io"}, 422),
        ({"email": "taken@x.io"}, 409),
        ({"emial": "typo@x.io"}, 422),
        (None, 422),  # no address on file, none given
    ],
)
def test_bad_input_or_a_taken_address_sends_and_writes_nothing(api, inbox, payload, status):
    api.ok("POST", "/v1/artists", api.admin, {"name": "T", "email": "taken@x.io"}, 201)
    artist = api.artist()
    before = row_counts(api.session)
    api.session.rollback()
    answer = invite(api, artist.id, payload)
    assert answer.status_code == status, answer.get_json()
    assert row_counts(api.session) == before
    api.session.rollback()
    assert email_of(api, artist.id) is None
    assert inbox.messages == []


def test_only_an_admin_invites_and_only_a_known_artist(api, inbox):
    artist = api.artist()
    assert invite(api, artist.id, {"email": "me@x.io"}, as_=artist).status_code == 403
    assert api.call("POST", f"/v1/artists/{artist.id}/invitation", None, {}).status_code == 401
    assert invite(api, "art_00000000000000000000", {"email": "x@x.io"}).status_code == 404
    assert email_of(api, artist.id) is None and inbox.messages == []


def test_the_accounts_page_lists_artists_and_invites_one(api, app, operator, inbox):
    made = api.ok("POST", "/v1/artists", api.admin, {"name": "Ona", "email": "ona@x.io"}, 201)
    page = operator.get("/dashboard/admin/accounts").get_data(as_text=True)
    row = re.search(rf'<li data-artist="{made["id"]}">.*?</li>', page, re.S).group(0)
    assert "ona@x.io" in row and "never" in row
    assert (
        f'id="invite-{made["id"]}" name="email" type="email" maxlength="254" value="ona@x.io"'
        in row
    )

    answer = operator.post(f"/dashboard/admin/artists/{made['id']}/invite", {"email": "ona@new.io"})
    assert answer.status_code == 303
    [message] = inbox.wait_for(1)
    assert message["To"] == "ona@new.io"
    after = operator.get("/dashboard/admin/accounts").get_data(as_text=True)
    assert "Sent Ona an invitation at ona@new.io" in after
    row = re.search(rf'<li data-artist="{made["id"]}">.*?</li>', after, re.S).group(0)
    assert "never" not in row and "ona@new.io" in row
    assert use(Browser(app), links_in(message)[0]).status_code == 302


@pytest.mark.parametrize(("email", "status"), [("nope", 422), ("taken@x.io", 409)])
def test_a_bad_invite_on_the_page_says_why_and_sends_nothing(api, operator, inbox, email, status):
    api.ok("POST", "/v1/artists", api.admin, {"name": "T", "email": "taken@x.io"}, 201)
    artist = api.artist()
    before = row_counts(api.session)
    api.session.rollback()
    operator.get("/dashboard/admin/accounts")
    answer = operator.post(f"/dashboard/admin/artists/{artist.id}/invite", {"email": email})
    assert answer.status_code == status
    html = answer.get_data(as_text=True)
    assert f'id="invite-{artist.id}-error"' in html and "Traceback" not in html
    assert row_counts(api.session) == before
    api.session.rollback()
    assert inbox.messages == []


def test_creating_an_artist_with_invite_now_mails_it_and_without_an_email_makes_nothing(
    api, operator, inbox
):
    operator.get("/dashboard/admin/accounts")
    before = row_counts(api.session)
    api.session.rollback()
    refused = operator.post(
        "/dashboard/admin/accounts", {"kind": "artist", "name": "Noemail", "invite": "yes"}
    )
    assert refused.status_code == 422
    assert "Give the address to send the invitation to." in refused.get_data(as_text=True)
    assert row_counts(api.session) == before and inbox.messages == []
    api.session.rollback()

    made = operator.post(
        "/dashboard/admin/accounts",
        {"kind": "artist", "name": "Rae", "email": "rae@x.io", "invite": "yes"},
    )
    assert made.status_code == 200
    assert 'id="made-invited"' in made.get_data(as_text=True)
    [message] = inbox.wait_for(1)
    assert message["To"] == "rae@x.io" and "Rae" in body(message)
    api.session.rollback()
    actions = api.session.scalars(select(OperatorAction.action).order_by(OperatorAction.id)).all()
    api.session.rollback()
    assert actions == ["artist.created", "artist.invited"]


def test_a_non_admin_cannot_invite_from_the_page(api, app, inbox):
    artist = api.artist()
    browser = Browser(app)
    browser.sign_in(artist.key)
    browser.get(f"/dashboard/artists/{artist.id}")
    answer = browser.post(f"/dashboard/admin/artists/{artist.id}/invite", {"email": "me@x.io"})
    assert answer.status_code == 403 and inbox.messages == []
    assert email_of(api, artist.id) is None
