"""A small driver over the Flask test client that speaks the API the way clients do."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from royalties.db import Base
from royalties.services.accounts import create_admin_key

_seq = itertools.count(1)
T = TypeVar("T")


@dataclass
class Actor:
    id: str | None
    key: str


class ApiDriver:
    def __init__(self, client: FlaskClient, session: Session) -> None:
        self.client = client
        self.session = session
        self.admin = Actor(None, create_admin_key(session))

    # raw calls -------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        as_: Actor | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> TestResponse:
        # End the test's own read transaction first: on SQLite it holds the write lock.
        self.session.rollback()
        hdrs = dict(headers or {})
        if as_ is not None:
            hdrs["Authorization"] = f"Bearer {as_.key}"
        return self.client.open(path, method=method, json=json, headers=hdrs, **kwargs)

    def ok(
        self,
        method: str,
        path: str,
        as_: Actor | None,
        json: Any = None,
        status: int = 200,
        **kw: Any,
    ) -> Any:
        response = self.call(method, path, as_, json, **kw)
        assert response.status_code == status, (response.status_code, response.get_json())
        return response.get_json()

    # fixtures of the domain --------------------------------------------------
    def artist(self, name: str = "Ada") -> Actor:
        body = self.ok("POST", "/v1/artists", self.admin, {"name": name}, 201)
        return Actor(body["id"], body["api_key"])

    def storefront(self, name: str = "Shop") -> Actor:
        body = self.ok(
            "POST",
            "/v1/storefronts",
            self.admin,
            {"name": name, "base_url": "https://shop.test"},
            201,
        )
        return Actor(body["id"], body["api_key"])

    def fan(
        self, handle: str | None = None, ref: str | None = None, email: str | None = None
    ) -> Actor:
        payload: dict[str, Any] = {"handle": handle or f"fan{next(_seq)}"}
        if ref:
            payload["ref"] = ref
        if email:
            payload["email"] = email
        body = self.ok("POST", "/v1/fans", None, payload, 201)
        return Actor(body["id"], body["api_key"])

    def content(self, artist: Actor, price: int = 1999, currency: str = "USD") -> dict[str, Any]:
        return self.ok(  # type: ignore[no-any-return]
            "POST",
            "/v1/content",
            artist,
            {
                "title": "Song",
                "kind": "track",
                "price": price,
                "currency": currency,
                "storefront_url": "https://shop.test/song",
            },
            201,
        )

    def chain(self, n: int) -> list[Actor]:
        """n fans, each sponsored by the previous one (first has no sponsor)."""
        fans: list[Actor] = []
        for _ in range(n):
            fans.append(self.fan(ref=fans[-1].id if fans else None))
        return fans


def row_counts(session: Session) -> dict[str, int]:
    """Rows per table: lets a test prove a refused request wrote nothing."""
    session.expire_all()
    counts = {}
    for table in Base.metadata.sorted_tables:
        counts[table.name] = session.scalar(select(func.count()).select_from(table)) or 0
    session.rollback()
    return counts


def new_key() -> str:
    return f"idem-{next(_seq)}"


def share(api: ApiDriver, fan: Actor, content_id: str) -> str:
    return api.ok("POST", "/v1/share-links", fan, {"content_id": content_id}, 201)["code"]  # type: ignore[no-any-return]


def buy(
    api: ApiDriver,
    storefront: Actor,
    content: dict[str, Any],
    buyer: dict[str, str],
    *,
    amount: int | None = None,
    share_code: str | None = None,
    key: str | None = None,
    status: int = 201,
) -> Any:
    payload: dict[str, Any] = {
        "content_id": content["id"],
        "amount": content["price"] if amount is None else amount,
        "currency": content["currency"],
        "buyer": buyer,
    }
    if share_code:
        payload["share_code"] = share_code
    return api.ok(
        "POST",
        "/v1/purchases",
        storefront,
        payload,
        status,
        headers={"Idempotency-Key": key or new_key()},
    )


def refund(
    api: ApiDriver, storefront: Actor, purchase_id: str, amount: int, status: int = 201
) -> Any:
    return api.ok(
        "POST",
        f"/v1/purchases/{purchase_id}/refunds",
        storefront,
        {"amount": amount},
        status,
        headers={"Idempotency-Key": new_key()},
    )


def ledger_is_sound(session: Session) -> None:
    from royalties import ledger

    session.rollback()
    assert ledger.check(session) == []
    session.rollback()


def age_last_attempt(session: Session, payout_id: str, *, minutes: int) -> None:
    """Let ``minutes`` pass for a payout's latest attempt (as a later run would see it)."""
    from datetime import timedelta

    from sqlalchemy import update

    from royalties.models import Payout

    payout = session.get(Payout, payout_id)
    assert payout is not None and payout.sent_at is not None
    session.execute(
        update(Payout)
        .where(Payout.id == payout_id)
        .values(sent_at=payout.sent_at - timedelta(minutes=minutes))
    )
    session.commit()


def events_after(session: Session, seq: int) -> list[dict[str, Any]]:
    """The events written after ``seq``, as receivers get them (plus whose they are)."""
    from royalties.models import Event

    rows = session.execute(select(Event).where(Event.seq > seq).order_by(Event.seq)).scalars()
    out = []
    for row in rows:
        body = json.loads(row.body)
        assert body["id"] == row.id and body["type"] == row.type
        out.append({**body, "_whose": (row.storefront_id, row.artist_id, row.fan_id)})
    session.rollback()
    return out


def last_seq(session: Session) -> int:
    from royalties.models import Event

    seq = session.scalar(select(Event.seq).order_by(Event.seq.desc()).limit(1)) or 0
    session.rollback()
    return seq


def at_once(n: int, work: Callable[[], T]) -> list[T | BaseException]:
    """Run ``work`` on ``n`` threads released together (a barrier); what each returned,
    or the exception it raised, in the order they finished."""
    barrier = threading.Barrier(n)
    results: list[T | BaseException] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait()
        try:
            result: T | BaseException = work()
        except BaseException as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results
