"""The sessions a payout run's senders work in, and how PostgreSQL plans for them.

A run is two short transactions per payout, from threads that spend most of their time
waiting on Stripe. One sender keeps one connection for its whole life; several take a
pooled connection per transaction only, so a sender waiting on Stripe holds none. On
PostgreSQL both plan every statement for the tables as they are now
(``plan_cache_mode = force_custom_plan``): see ``custom_plans`` for why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session


@contextmanager
def one_connection(bind: Any) -> Iterator[Session]:
    """A session that keeps one connection for its whole life, planning as it goes.

    A run is two short transactions per payout. A session bound to the engine checks a
    connection out for each and back in after (a reset on return): more than the
    transactions' own statements cost. A bind that is already a connection is used as
    it is."""
    if not isinstance(bind, Engine):
        with Session(bind=bind, expire_on_commit=False) as work:
            yield work
        return
    with (
        bind.connect() as conn,
        custom_plans(conn),
        Session(bind=conn, expire_on_commit=False) as work,
    ):
        yield work


@contextmanager
def pooled(engine: Engine) -> Iterator[Session]:
    """A session that takes a pooled connection per transaction, planning as it goes
    (``SET LOCAL``: the setting ends with each transaction, and its connection goes back
    to the pool as it was)."""
    with Session(bind=engine, expire_on_commit=False) as work:
        if engine.dialect.name == "postgresql":

            @event.listens_for(work, "after_begin")
            def _plan(_session: Session, _tx: Any, conn: Connection) -> None:
                conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")

        yield work


@contextmanager
def custom_plans(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, plan every statement for the tables as they are now.

    A run grows ``payouts``, ``payout_events`` and ``ledger_transactions`` by a row or
    two per payout, from nothing. PostgreSQL switches a statement executed more than five
    times to a cached *generic* plan -- psycopg prepares repeated statements, and the
    foreign-key checks and PL/pgSQL triggers cache theirs per connection -- and keeps it
    until the table's statistics change. Chosen while the table was nearly empty, that
    plan is a sequential scan, so each payout costs O(payouts so far): a 100k-fan run
    would be O(N^2) wherever autovacuum's ANALYZE does not keep up. A custom plan is made
    for the parameters and the table's current size at each execution (tens of
    microseconds), and depends on neither the statistics nor when they were gathered."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
    conn.commit()
    try:
        yield
    finally:
        try:
            conn.rollback()
            conn.exec_driver_sql("RESET plan_cache_mode")
            conn.commit()
        except Exception:  # a broken connection: the pool drops it, setting and all
            conn.invalidate()
