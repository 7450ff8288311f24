"""Races on PostgreSQL: real threads, each with its own session (or its own Flask test
client on the same app), released together by a barrier.

What must hold however the threads interleave: one purchase per Idempotency-Key, no
lost reward, refunds never above the amount, the referral graph stays a forest, and
each reward matures exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from royalties import idempotency
from royalties import rewards as holds
from royalties.db import make_sessionmaker
from royalties.errors import IdempotencyInFlight, RefundError
from royalties.models import (
    Fan,
    IdempotencyRecord,
    LedgerEntry,
    LedgerTransaction,
    Purchase,
    Refund,
    Reward,
)
from royalties.services import balances, purchases, refunds
from royalties.services.purchases import BuyerRef
from tests.helpers import buy, new_key, row_counts, share
from tests.integration.conftest import (
    Builder,
    assert_forest,
    balances_of,
    earned_from_rewards,
    ledger_clean,
    mature_count,
    unique,
)

pytestmark = pytest.mark.postgres

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
HOLD = timedelta(days=30)
REWARDS = (99, 39, 19, 9, 4)  # levels 1 to 5 of a 1999 sale on the default plan


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def together(n: int, work: Callable[[int], Any], timeout: float = 120) -> list[Outcome]:
    """Run ``work(0..n-1)`` in ``n`` threads released at once; every outcome, in order."""
    barrier = threading.Barrier(n)
    outcomes = [Outcome() for _ in range(n)]

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i].value = work(i)
        except BaseException as exc:
            outcomes[i].error = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    return outcomes


def in_own_session(engine: Engine, work: Callable[[Session], Any]) -> Any:
    with make_sessionmaker(engine)() as session:
        return work(session)


@dataclass
class Shop:
    storefront: str
    artist: str
    item: str
    fans: list[str]  # F1 .. F6, F6 at the bottom
    code: str  # F6's link

    @property
    def earners(self) -> list[str]:
        return self.fans[:0:-1]


@pytest.fixture
def shop(build: Builder) -> Shop:
    artist = build.artist()
    item = build.content(artist, price=1999)
    fans = build.chain(6)
    return Shop(build.storefront(), artist, item.id, fans, build.link(fans[-1], item.id))


def sell(session: Session, shop: Shop, buyer: BuyerRef, *, at: datetime | None = None) -> dict:
    return purchases.record_purchase(
        session,
        storefront_id=shop.storefront,
        content_id=shop.item,
        amount=1999,
        currency="USD",
        buyer=buyer,
        share_code=shop.code,
        now=at,
    )


# ---- a. one Idempotency-Key, sixteen identical requests --------------------------------


def test_sixteen_identical_purchases_under_one_key_record_one_purchase(app, api, session):
    artist, store = api.artist(), api.storefront()
    item = api.content(artist)
    f6 = api.chain(6)[-1]
    code = share(api, f6, item["id"])
    clients = [app.test_client() for _ in range(16)]

    for round_ in range(5):
        key = new_key()
        body = {
            "content_id": item["id"],
            "amount": 1999,
            "currency": "USD",
            "buyer": {"email": f"race{round_}@example.com"},
            "share_code": code,
        }
        headers = {"Authorization": f"Bearer {store.key}", "Idempotency-Key": key}
        session.rollback()
        outcomes = together(
            16, lambda i, b=body, h=headers: clients[i].post("/v1/purchases", json=b, headers=h)
        )
        assert [o.error for o in outcomes] == [None] * 16
        responses = [o.value for o in outcomes]
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, statuses
        assert statuses[201] >= 1
        created = {r.get_json()["id"] for r in responses if r.status_code == 201}
        assert len(created) == 1
        for r in responses:
            if r.status_code == 409:
                assert r.get_json()["code"] == "idempotency_in_flight"
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Purchase)) == round_ + 1
        replay = buy(api, store, item, body["buyer"], share_code=code, key=key)
        assert replay["id"] in created
    ledger_clean(session)


def test_sixteen_identical_failing_refunds_under_one_key_never_answer_5xx(app, api, session):
    artist, store = api.artist(), api.storefront()
    item = api.content(artist)
    sale = buy(api, store, item, {"email": "b@example.com"})
    clients = [app.test_client() for _ in range(16)]
    path = f"/v1/purchases/{sale['id']}/refunds"

    for round_ in range(5):
        key = new_key()
        headers = {"Authorization": f"Bearer {store.key}", "Idempotency-Key": key}
        session.rollback()
        outcomes = together(
            16, lambda i, h=headers: clients[i].post(path, json={"amount": 5000}, headers=h)
        )
        assert [o.error for o in outcomes] == [None] * 16
        statuses = Counter(o.value.status_code for o in outcomes)
        assert set(statuses) <= {409, 422}, statuses
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Refund)) == round_  # none new
        # the failed request released its key: a corrected body under it is accepted
        fixed = api.call("POST", path, store, {"amount": 1}, headers={"Idempotency-Key": key})
        assert fixed.status_code == 201, fixed.get_json()
    session.rollback()
    assert session.get(Purchase, sale["id"]).refunded_amount == 5
    assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) >= 5
    ledger_clean(session)


def _hold_key(session: Session, client_id: str, key: str, scope: str, body: Any) -> Any:
    """Claim ``key`` in ``session``'s transaction, as a request still running would."""
    claim = idempotency.claim(
        session,
        client_id=client_id,
        key=key,
        scope=scope,
        request_hash=idempotency.fingerprint(scope, body),
    )
    assert isinstance(claim, idempotency.Claim)
    return claim


def test_a_duplicate_of_an_uncommitted_request_is_409_then_replays_it(engine, app, api):
    """Request A has claimed its key and not yet committed: a duplicate B is told 409 at
    once (it does not wait on A); once A commits, B replays A's answer."""
    artist, store = api.artist(), api.storefront()
    item = api.content(artist)
    body = {
        "content_id": item["id"],
        "amount": 1999,
        "currency": "USD",
        "buyer": {"email": "x@y.io"},
    }
    scope = "POST /v1/purchases"
    headers = {"Authorization": f"Bearer {store.key}", "Idempotency-Key": "k-a"}
    with Session(engine) as a:
        claim = _hold_key(a, store.id, "k-a", scope, body)
        duplicate = app.test_client().post("/v1/purchases", json=body, headers=headers)
        assert duplicate.status_code == 409
        assert duplicate.get_json()["code"] == "idempotency_in_flight"
        idempotency.complete(a, claim, {"id": "pur_from_a"})
        a.commit()
    replay = app.test_client().post("/v1/purchases", json=body, headers=headers)
    assert replay.status_code == 201 and replay.get_json() == {"id": "pur_from_a"}
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_a_batch_item_whose_key_an_uncommitted_request_holds_is_409_alone(engine, app, api):
    """The batch claims its keys together (``claim_many``) under the same locks as a
    single purchase: the item whose key request A holds is told 409 at once, and the
    other items are recorded."""
    artist, store = api.artist(), api.storefront()
    item = api.content(artist)
    scope = "POST /v1/purchases"

    def sale(key: str) -> dict[str, Any]:
        return {
            "content_id": item["id"],
            "amount": 1999,
            "currency": "USD",
            "buyer": {"email": f"{key}@y.io"},
            "idempotency_key": key,
        }

    held = sale("k-held")
    unkeyed = {name: value for name, value in held.items() if name != "idempotency_key"}
    with Session(engine) as a:
        _hold_key(a, store.id, "k-held", scope, unkeyed)
        answer = app.test_client().post(
            "/v1/purchases/batch",
            json={"purchases": [sale("k-1"), held, sale("k-2")]},
            headers={"Authorization": f"Bearer {store.key}"},
        )
        a.rollback()
    results = answer.get_json()["results"]
    assert [r["status"] for r in results] == [201, 409, 201]
    assert results[1]["problem"]["code"] == "idempotency_in_flight"


def test_the_same_batch_sent_by_four_clients_at_once_records_each_sale_once(app, api, session):
    artist, store = api.artist(), api.storefront()
    item = api.content(artist)
    code = share(api, api.chain(3)[-1], item["id"])
    sales = [
        {
            "content_id": item["id"],
            "amount": 1999,
            "currency": "USD",
            "buyer": {"email": f"{key}@batch.test"},
            "share_code": code,
            "idempotency_key": key,
        }
        for key in (new_key() for _ in range(20))
    ]
    clients = [app.test_client() for _ in range(4)]
    headers = {"Authorization": f"Bearer {store.key}"}
    session.rollback()
    outcomes = together(
        4,
        lambda i: clients[i].post(
            "/v1/purchases/batch", json={"purchases": sales}, headers=headers
        ),
    )
    assert [o.error for o in outcomes] == [None] * 4
    ids: dict[int, set[str]] = {place: set() for place in range(20)}
    for outcome in outcomes:
        assert outcome.value.status_code == 200
        for place, result in enumerate(outcome.value.get_json()["results"]):
            assert result["status"] in (201, 409), result
            if result["status"] == 201:
                ids[place].add(result["purchase"]["id"])
            else:
                assert result["problem"]["code"] == "idempotency_in_flight"
    # Whoever held a key recorded its sale; the others were told 409 for it.
    assert [len(found) for found in ids.values()] == [1] * 20, ids
    session.rollback()
    recorded = select(func.count()).select_from(Purchase).where(Purchase.content_id == item["id"])
    assert session.scalar(recorded) == 20
    ledger_clean(session)


def test_a_duplicate_that_slips_past_the_lock_stores_nothing(engine, session):
    """The unique (client, key) backs the lock: were B to read the key just before A
    committed, B's ``complete`` finds A's record, refuses, and B's work rolls back."""
    scope, body_hash = "POST /v1/x", idempotency.fingerprint("POST /v1/x", {"a": 1})
    claims = []
    for s in (session, Session(engine)):
        claims.append(
            idempotency.claim(s, client_id="sf_1", key="k", scope=scope, request_hash=body_hash)
        )
        s.rollback()  # release the lock: as if B had read before A's commit
    a, b = session, Session(engine)
    idempotency.complete(a, claims[0], {"who": "a"})
    a.commit()
    with pytest.raises(IdempotencyInFlight):
        idempotency.complete(b, claims[1], {"who": "b"})
    b.rollback()
    b.close()
    rows = session.scalars(select(IdempotencyRecord).where(IdempotencyRecord.key == "k")).all()
    assert [r.response_body for r in rows] == [{"who": "a"}]


def test_a_sale_whose_key_a_duplicate_completed_meanwhile_stores_nothing(engine, session, shop):
    """The same race through a whole sale: its writes (on PostgreSQL one statement) find
    the other request's record, refuse, and nothing of the sale is kept."""
    scope = "POST /v1/purchases"
    body_hash = idempotency.fingerprint(scope, {"sale": 1})
    claims = []
    for s in (session, Session(engine)):
        claims.append(
            idempotency.claim(
                s, client_id=shop.storefront, key="k", scope=scope, request_hash=body_hash
            )
        )
        s.rollback()
    other = Session(engine)
    idempotency.complete(other, claims[1], {"who": "the other"})
    other.commit()
    other.close()
    before = row_counts(session)
    with pytest.raises(IdempotencyInFlight):
        purchases.record_purchase(
            session,
            storefront_id=shop.storefront,
            content_id=shop.item,
            amount=1999,
            currency="USD",
            buyer=BuyerRef(email="raced@buyer.test"),
            share_code=shop.code,
            claim=claims[0],
        )
    session.rollback()
    assert row_counts(session) == before
    ledger_clean(session)


# ---- b. concurrent purchases crediting one five-level upline ---------------------------


def test_concurrent_purchases_through_one_upline_lose_no_reward(engine, session, build, shop):
    threads, per_thread = 8, 10
    roots = [[build.fan() for _ in range(per_thread)] for _ in range(threads)]

    def work(i: int) -> list[str]:
        def run(s: Session) -> list[str]:
            ids = []
            for j in range(per_thread):
                if j % 3 == 0:
                    buyer = BuyerRef(email=f"{unique('b')}@example.com")
                elif j % 3 == 1:
                    buyer = BuyerRef(external_id=unique("ext"))
                else:  # an existing root: the sale also gives it a sponsor
                    buyer = BuyerRef(fan_id=roots[i][j])
                ids.append(sell(s, shop, buyer)["id"])
            return ids

        return in_own_session(engine, run)

    outcomes = together(threads, work)
    assert [o.error for o in outcomes] == [None] * threads
    sales = threads * per_thread
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Purchase)) == sales
    for fan, reward in zip(shop.earners, REWARDS, strict=True):
        assert balances_of(session, fan) == {"USD": (sales * reward, 0, 0)}
        assert earned_from_rewards(session, fan) == {"USD": sales * reward}
    assert balances_of(session, shop.fans[0]) == {}
    for batch in roots:
        for j, root in enumerate(batch):
            expected = shop.fans[-1] if j % 3 == 2 else None
            assert session.get(Fan, root, populate_existing=True).sponsor_id == expected
    assert_forest(session)
    ledger_clean(session)


# ---- c. concurrent refunds of one purchase ---------------------------------------------


def test_concurrent_refunds_never_refund_more_than_the_purchase(engine, session, shop):
    sale = sell(session, shop, BuyerRef(email="b@example.com"))

    def work(_: int) -> dict:
        return in_own_session(
            engine,
            lambda s: refunds.refund_purchase(
                s, storefront_id=shop.storefront, purchase_id=sale["id"], amount=300
            ),
        )

    outcomes = together(16, work)
    done = [o for o in outcomes if o.error is None]
    refused = [o for o in outcomes if o.error is not None]
    assert len(done) == 6
    assert all(isinstance(o.error, RefundError) for o in refused), [o.error for o in refused]
    session.rollback()
    assert session.get(Purchase, sale["id"]).refunded_amount == 1800
    assert session.scalar(select(func.sum(Refund.amount))) == 1800
    for fan, reward in zip(shop.earners, REWARDS, strict=True):
        taken = reward * 1800 // 1999
        assert balances_of(session, fan) == {"USD": (reward - taken, 0, 0)}
    assert sorted(o.value["refunded_total"] for o in done) == [300, 600, 900, 1200, 1500, 1800]
    ledger_clean(session)


# ---- d. concurrent re-sponsoring that would close loops --------------------------------


def test_concurrent_cross_purchases_between_roots_keep_the_graph_a_forest(engine, session, build):
    artist = build.artist()
    item = build.content(artist).id
    store = build.storefront()

    def tree() -> tuple[str, str, str]:
        """A root with a three-deep downline; the root's link and the bottom fan's link."""
        root = build.fan()
        bottom = build.fan(build.fan(build.fan(root)))
        return root, build.link(root, item), build.link(bottom, item)

    def buy_through(buyer: BuyerRef, code: str) -> dict:
        return in_own_session(
            engine,
            lambda s: purchases.record_purchase(
                s,
                storefront_id=store,
                content_id=item,
                amount=1999,
                currency="USD",
                buyer=buyer,
                share_code=code,
            ),
        )

    for size in (2, 2, 2, 3, 3, 5, 12):
        ring = [tree() for _ in range(size)]

        def work(i: int, ring: list[tuple[str, str, str]] = ring, size: int = size) -> dict:
            if i < size:  # root i buys through root i+1's link: the last one closes a loop
                return buy_through(BuyerRef(fan_id=ring[i][0]), ring[(i + 1) % size][1])
            # meanwhile new buyers join at the bottom of the trees being re-rooted
            bottom_link = ring[i % size][2]
            return buy_through(BuyerRef(email=f"{unique('new')}@example.com"), bottom_link)

        outcomes = together(2 * size, work)
        assert [o.error for o in outcomes] == [None] * (2 * size)
        session.rollback()
        got = [session.get(Fan, root, populate_existing=True).sponsor_id for root, *_ in ring]
        assert sum(s is not None for s in got) == size - 1, got  # exactly one is refused
        for i, sponsor in enumerate(got):
            assert sponsor in (None, ring[(i + 1) % size][0])
        for outcome, (root, *_) in zip(outcomes, ring, strict=False):
            assert root not in {r["fan_id"] for r in outcome.value["rewards"]}
        assert_forest(session)
    ledger_clean(session)


# ---- e. concurrent maturing ------------------------------------------------------------


def test_concurrent_balance_reads_mature_each_reward_exactly_once(engine, session, shop):
    for n in range(4):
        sell(session, shop, BuyerRef(email=f"b{n}@example.com"), at=T0 + timedelta(hours=n))
    f6 = shop.fans[-1]
    later = T0 + HOLD + timedelta(days=1)

    owed = {fan: 4 * reward for fan, reward in zip(shop.earners, REWARDS, strict=True)}

    def reader(i: int) -> str:
        return f6 if i % 2 == 0 else shop.earners[i % 5]

    def work(i: int) -> Any:
        if i % 4 == 3:  # the maturing job runs at the same moment as the reads

            def job(s: Session) -> int:
                moved = holds.mature_due(s, now=later)
                s.commit()
                return moved

            return in_own_session(engine, job)
        return in_own_session(engine, lambda s: balances.fan_balances(s, reader(i), now=later))

    outcomes = together(16, work)
    assert [o.error for o in outcomes] == [None] * 16
    for i, outcome in enumerate(outcomes):
        if i % 4 != 3:  # whatever a read saw, nothing was lost or counted twice
            (shown,) = outcome.value
            assert (shown.pending + shown.available, shown.paid) == (owed[reader(i)], 0)
    session.rollback()
    rewards = session.scalars(select(Reward.id)).all()
    assert len(rewards) == 4 * 5
    # anything a read or the job skipped (locked by another) matures on the next read
    for fan in shop.earners:
        balances.fan_balances(session, fan, now=later)
    per_reward = dict(
        session.execute(
            select(LedgerEntry.reward_id, func.count(LedgerEntry.id))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.kind == "mature")
            .group_by(LedgerEntry.reward_id)
        ).all()
    )
    assert per_reward == dict.fromkeys(rewards, 2)  # one debit, one credit, once
    distinct_txns = session.execute(
        select(LedgerEntry.reward_id, func.count(func.distinct(LedgerEntry.transaction_id)))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.kind == "mature")
        .group_by(LedgerEntry.reward_id)
    ).all()
    assert {n for _, n in distinct_txns} == {1}
    assert mature_count(session) >= 1
    for fan, reward in zip(shop.earners, REWARDS, strict=True):
        assert balances_of(session, fan) == {"USD": (0, 4 * reward, 0)}
    ledger_clean(session)


# ---- f. a refund racing the maturing of the rewards it reverses ------------------------


def test_a_refund_racing_maturing_never_double_counts(engine, session, shop):
    later = T0 + HOLD
    sales = [sell(session, shop, BuyerRef(email=f"b{n}@example.com"), at=T0) for n in range(6)]

    def work(i: int) -> Any:
        if i < len(sales):
            return in_own_session(
                engine,
                lambda s: refunds.refund_purchase(
                    s,
                    storefront_id=shop.storefront,
                    purchase_id=sales[i]["id"],
                    amount=1000,
                    now=later,
                ),
            )

        def job(s: Session) -> int:
            moved = holds.mature_due(s, now=later)
            s.commit()
            return moved

        return in_own_session(engine, job)

    outcomes = together(len(sales) + 4, work)
    assert [o.error for o in outcomes] == [None] * (len(sales) + 4)
    session.rollback()
    for fan in shop.earners:
        balances.fan_balances(session, fan, now=later)
    for fan, reward, taken in zip(shop.earners, REWARDS, [49, 19, 9, 4, 2], strict=True):
        assert balances_of(session, fan) == {"USD": (0, 6 * (reward - taken), 0)}
    ledger_clean(session)
