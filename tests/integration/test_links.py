"""Share-link services on a real database, and the pure ``add_ref`` rule they rely on."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from royalties import graph
from royalties.errors import Conflict, Forbidden, NotFound
from royalties.models import Click, ShareLink
from royalties.services import accounts, catalog, links


@pytest.fixture
def world(session):
    artist = accounts.create_artist(session, name="Ada")
    item = catalog.create_content(
        session,
        artist_id=artist.id,
        title="Song",
        kind="track",
        price=1999,
        currency="USD",
        storefront_url="https://shop.test/song?x=1",
    )
    fan = graph.create_fan(session, handle="ann", email=None, sponsor_id=None)
    session.commit()
    return {"artist": artist.id, "content": item.id, "fan": fan.id}


def new_link(session, world):
    return links.create_share_link(session, fan_id=world["fan"], content_id=world["content"])


def click_count(session, code):
    return session.scalar(select(func.count()).select_from(Click).where(Click.code == code))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.test/song", "https://shop.test/song?ref=c0de"),
        ("https://shop.test/song?x=1#top", "https://shop.test/song?x=1&ref=c0de#top"),
        ("https://shop.test/song?ref=old", "https://shop.test/song?ref=c0de"),
        (
            "https://shop.test/?a=1&REF=keep&ref=x&b=%2B",
            "https://shop.test/?a=1&REF=keep&b=%2B&ref=c0de",
        ),
        ("https://shop.test/song?#frag", "https://shop.test/song?ref=c0de#frag"),
        ("https://shop.test/song?flag&x=", "https://shop.test/song?flag&x=&ref=c0de"),
    ],
)
def test_add_ref_puts_the_code_in_the_query_and_keeps_the_rest(url, expected):
    assert links.add_ref(url, "c0de") == expected


def test_a_taken_code_is_skipped_for_the_next_candidate(session, world):
    taken = new_link(session, world).code
    assert links.new_code(session, iter([taken, "abcdefghjk"])) == "abcdefghjk"


def test_giving_up_after_repeated_collisions_is_a_conflict(session, world):
    taken = new_link(session, world).code
    with pytest.raises(Conflict):
        links.new_code(session, iter([taken] * 10))


def test_a_link_to_unknown_content_is_not_found_and_adds_nothing(session, world):
    with pytest.raises(NotFound):
        links.create_share_link(session, fan_id=world["fan"], content_id="cnt_nope")
    assert session.scalar(select(func.count()).select_from(ShareLink)) == 0


def test_a_link_belongs_to_the_artist_of_its_content(session, world):
    link = new_link(session, world)
    session.expire_all()
    stored = session.get(ShareLink, link.code)
    assert (stored.fan_id, stored.artist_id, stored.active) == (world["fan"], world["artist"], True)


def test_a_click_returns_the_target_and_records_one_row(session, world):
    code = new_link(session, world).code
    target = links.resolve_click(session, code=code, ip_hash="h" * 64, user_agent="ua")
    assert target == f"https://shop.test/song?x=1&ref={code}"
    session.rollback()  # the click was committed by the service, not left pending
    assert click_count(session, code) == 1


@pytest.mark.postgres
def test_only_a_clicks_commit_skips_waiting_for_the_disk(session, world):
    """The click's transaction commits with synchronous_commit off, for itself only: the
    link's creation before it and the next transaction wait for the WAL flush."""
    seen: list[str] = []

    @event.listens_for(session, "before_commit")
    def setting(s):
        seen.append(s.connection().exec_driver_sql("SHOW synchronous_commit").scalar())

    code = new_link(session, world).code  # the service commits
    assert links.resolve_click(session, code=code, ip_hash="h" * 64, user_agent="ua")
    session.commit()  # a transaction of its own after the click's
    assert seen == ["on", "off", "on"]
    assert click_count(session, code) == 1


@pytest.mark.parametrize("role", ["fan", "artist", "admin"])
def test_a_disabled_link_resolves_to_nothing_and_records_nothing(session, world, role):
    code = new_link(session, world).code
    owner = {"fan": world["fan"], "artist": world["artist"], "admin": None}[role]
    links.disable_share_link(session, code=code, acting_role=role, acting_owner_id=owner)
    assert links.resolve_click(session, code=code, ip_hash="h" * 64, user_agent="ua") is None
    assert click_count(session, code) == 0


@pytest.mark.parametrize(
    ("role", "owner"),
    [("fan", "fan_other"), ("artist", "art_other"), ("storefront", "sf_x"), ("fan", None)],
)
def test_only_the_fan_the_artist_or_an_admin_may_disable(session, world, role, owner):
    code = new_link(session, world).code
    with pytest.raises(Forbidden):
        links.disable_share_link(session, code=code, acting_role=role, acting_owner_id=owner)
    session.expire_all()
    assert session.get(ShareLink, code).active is True


def test_disabling_again_keeps_the_first_disabled_at(session, world):
    code = new_link(session, world).code
    first = links.disable_share_link(session, code=code, acting_role="admin", acting_owner_id=None)
    stamp = first.disabled_at
    again = links.disable_share_link(session, code=code, acting_role="admin", acting_owner_id=None)
    assert again.active is False and again.disabled_at == stamp


def test_stats_count_only_the_links_own_clicks(session, world):
    a, b = new_link(session, world).code, new_link(session, world).code
    for code in (a, a, b):
        links.resolve_click(session, code=code, ip_hash="h" * 64, user_agent="ua")
    assert links.link_with_stats(session, a)[1] == 2
    assert links.link_with_stats(session, b)[1] == 1


@pytest.mark.parametrize("code", ["", "ABCDEFGHJK", "abcdefghj", "abcdefghjkm", "abcdefghji"])
def test_codes_of_the_wrong_shape_are_not_found(session, world, code):
    assert not links.looks_like_code(code)
    with pytest.raises(NotFound):
        links.link_with_stats(session, code)
    assert links.resolve_click(session, code=code, ip_hash="h", user_agent="") is None
