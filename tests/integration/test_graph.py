"""Sponsor rules on a real database: set once, never self, never a loop; the closure
table always agrees with a plain walk of sponsor pointers."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from royalties import graph
from royalties.errors import GraphError
from royalties.models import Fan


def make(session, handle, sponsor=None):
    fan = graph.create_fan(session, handle=handle, sponsor_id=sponsor)
    session.commit()
    return fan.id


def walk_upline(session, fan_id, depth=5):
    sponsors = dict(session.execute(select(Fan.id, Fan.sponsor_id)).all())
    out, current = [], sponsors[fan_id]
    while current is not None and len(out) < depth:
        out.append(current)
        current = sponsors[current]
    return out


def test_a_fan_cannot_sponsor_itself(session):
    a = make(session, "a")
    with pytest.raises(GraphError):
        graph.assign_sponsor(session, a, a)
    assert graph.assign_sponsor(session, a, a, strict=False) is False


def test_the_sponsor_is_set_once_and_never_changed(session):
    a, b, c = make(session, "a"), make(session, "b"), make(session, "c")
    assert graph.assign_sponsor(session, c, a)
    session.commit()
    with pytest.raises(GraphError):
        graph.assign_sponsor(session, c, b)
    session.rollback()
    assert session.get(Fan, c).sponsor_id == a


def test_a_sponsor_that_would_close_a_loop_is_refused(session):
    root = make(session, "root")
    chain = [root]
    for i in range(8):  # deeper than the closure table: the loop check must still see it
        chain.append(make(session, f"f{i}", chain[-1]))
    with pytest.raises(GraphError, match="loop"):
        graph.assign_sponsor(session, root, chain[-1])
    session.rollback()
    assert graph.assign_sponsor(session, root, chain[3], strict=False) is False
    assert session.get(Fan, root).sponsor_id is None


def test_giving_a_root_a_sponsor_splices_the_upline_onto_its_whole_downline(session):
    top = [make(session, "t0")]
    for i in range(1, 4):
        top.append(make(session, f"t{i}", top[-1]))
    sub = [make(session, "s0")]
    for i in range(1, 6):
        sub.append(make(session, f"s{i}", sub[-1]))
    assert graph.assign_sponsor(session, sub[0], top[-1])
    session.commit()
    for fan in sub + top:
        assert graph.upline(session, fan) == walk_upline(session, fan)
    assert graph.upline(session, sub[2]) == [sub[1], sub[0], top[3], top[2], top[1]]
    assert {session.get(Fan, f).root_id for f in sub + top} == {top[0]}
    assert graph.downline_counts(session, top[1]) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}


def test_random_forests_keep_the_closure_table_equal_to_a_walk(session):
    rng = random.Random(7)
    fans: list[str] = []
    for i in range(60):
        sponsor = rng.choice(fans) if fans and rng.random() < 0.7 else None
        fans.append(make(session, f"r{i}", sponsor))
    for _ in range(40):  # re-root random roots under random fans, allowed or not
        a, b = rng.choice(fans), rng.choice(fans)
        graph.assign_sponsor(session, a, b, strict=False)
        session.commit()
    sponsors = dict(session.execute(select(Fan.id, Fan.sponsor_id)).all())
    for fan in fans:  # a forest: every walk ends
        seen, current = set(), fan
        while current is not None:
            assert current not in seen
            seen.add(current)
            current = sponsors[current]
        assert graph.upline(session, fan) == walk_upline(session, fan)
