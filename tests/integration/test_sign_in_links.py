"""Sign-in links through the services on a real database: who an address names, expiry on
a clock the test holds, single use under concurrent attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties import graph, sign_in
from royalties.db import make_sessionmaker
from royalties.errors import ValidationFailed
from royalties.models import SignInLink
from royalties.services import accounts
from royalties.services.sign_in import end_session, link_is_usable, request_link, use_link
from tests.helpers import at_once

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ADMINS = frozenset({"ops@example.com"})


def _fan(session: Session, email: str) -> str:
    fan = graph.create_fan(session, handle=email.split("@")[0], email=email, sponsor_id=None)
    session.commit()
    return fan.id


def _link(session: Session, email: str, now: datetime = T0) -> str:
    [issued] = request_link(session, email=email, admin_emails=ADMINS, now=now)
    return issued.token


def test_a_link_works_until_just_before_15_minutes_and_not_at_15(session):
    fan_id = _fan(session, "ann@example.com")
    almost = _link(session, "ann@example.com")
    late = _link(session, "ann@example.com")
    edge = T0 + sign_in.LINK_TTL
    assert link_is_usable(session, almost, now=edge - timedelta(seconds=1))
    grant = use_link(session, token=almost, admin_emails=ADMINS, now=edge - timedelta(seconds=1))
    assert grant is not None and (grant.role, grant.owner_id) == ("fan", fan_id)
    assert not link_is_usable(session, late, now=edge)
    assert use_link(session, token=late, admin_emails=ADMINS, now=edge) is None
    session.rollback()
    assert session.scalar(select(SignInLink.used_at).where(SignInLink.id == grant.link_id)) == (
        edge - timedelta(seconds=1)
    )


def test_a_link_works_once_and_its_session_ends_once(session):
    _fan(session, "bob@example.com")
    token = _link(session, "bob@example.com")
    grant = use_link(session, token=token, admin_emails=ADMINS, now=T0)
    assert grant is not None
    assert use_link(session, token=token, admin_emails=ADMINS, now=T0) is None
    assert sign_in.session_is_live(session, grant.link_id, "fan", grant.owner_id, ADMINS)
    assert end_session(session, grant.link_id, now=T0) is True
    assert end_session(session, grant.link_id, now=T0) is False
    assert not sign_in.session_is_live(session, grant.link_id, "fan", grant.owner_id, ADMINS)


def test_unknown_addresses_get_no_link_and_write_nothing(session):
    assert request_link(session, email="nobody@example.com", admin_emails=ADMINS, now=T0) == []
    assert session.scalar(select(func.count()).select_from(SignInLink)) == 0


def test_an_address_names_the_admin_the_artist_and_the_fan_that_use_it(session):
    artist = accounts.create_artist(session, name="Ops Band", email="OPS@example.com")
    fan_id = _fan(session, "ops@example.com")
    people = sign_in.identities(session, "ops@example.com", ADMINS)
    assert [(p.role, p.owner_id) for p in people] == [
        ("admin", None),
        ("artist", artist.id),
        ("fan", fan_id),
    ]


def test_an_admin_link_stops_working_when_the_address_leaves_admin_emails(session):
    token = _link(session, "ops@example.com")
    assert use_link(session, token=token, admin_emails=frozenset(), now=T0) is None


@pytest.mark.parametrize("raw", ["", " ", "a", "a@b", "a b@c.de", "a@b..de", "x" * 255])
def test_parse_email_refuses_what_cannot_be_an_address(raw):
    with pytest.raises(ValidationFailed):
        sign_in.parse_email(raw)


def test_parse_email_normalises_case_and_spaces():
    assert sign_in.parse_email("  Ann.Lee+fans@Example.CO.uk ") == "ann.lee+fans@example.co.uk"
    assert sign_in.admin_addresses(" A@x.io, ,b@Y.io") == {"a@x.io", "b@y.io"}


def test_of_concurrent_uses_of_one_link_exactly_one_signs_in(engine: Engine, session):
    """Threads with their own sessions, released together: one grant, the rest None."""
    _fan(session, "cyd@example.com")
    token = _link(session, "cyd@example.com")
    session.rollback()
    factory = make_sessionmaker(engine)
    threads = 6

    def attempt() -> object:
        with factory() as own:
            return use_link(own, token=token, admin_emails=ADMINS, now=T0)

    results = at_once(threads, attempt)
    assert len(results) == threads
    granted = [r for r in results if r is not None]
    assert len(granted) == 1, results
    assert not isinstance(granted[0], Exception), granted
