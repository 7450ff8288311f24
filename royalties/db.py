"""Database plumbing: the declarative base, engines and sessions.

- One ``MetaData`` with a naming convention, so Alembic names every constraint stably
  on SQLite and PostgreSQL alike.
- Timestamps are stored as naive UTC and always handed out timezone-aware (UTC).
- SQLite gets foreign keys on, WAL and a busy timeout, so the embedded default behaves
  like a real database under a few concurrent writers. Its transactions take the write
  lock up front, except a read that opens a request (``first_read``), and its writers
  wait for that lock in a queue (``royalties.writer_queue``).
- A server database's pooled connection is pinged before reuse only when it sat idle
  (see ``make_engine``).
- Advisory locks are made one way (``advisory_lock``): a name of string parts, hashed in
  Python to PostgreSQL's 64-bit key, held until the transaction ends.
- Services receive a ``Session`` and own commit/rollback; nothing here commits.
- An engine's errors and logs never show SQL parameters (``hide_parameters``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache, partial
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    DateTime,
    Integer,
    MetaData,
    PoolProxiedConnection,
    Select,
    String,
    Table,
    bindparam,
    column,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from royalties.writer_queue import QueuedConnection, begin_write, queue_for

DEFAULT_DATABASE_URL = "sqlite:///royalties.db"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: A 64-bit key that autoincrements everywhere: SQLite makes only an INTEGER PRIMARY KEY
#: (its 64-bit rowid) autoincrement, so it is INTEGER there and BIGINT elsewhere.
BIGINT_PK = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def naive_utc(value: datetime | None) -> datetime | None:
    """A timezone-aware timestamp as a UTC column stores it: naive UTC. A naive one is
    refused: which zone it meant is unknown."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the usual case (utcnow, values read back): no conversion
        return value.replace(tzinfo=None)
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def database_url(url: str | None = None) -> str:
    """``url`` if given, else ``$DATABASE_URL``, else the embedded SQLite file."""
    url = url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    # Accept the common libpq-style URLs and route them to psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url_or_engine: str | Engine) -> bool:
    if isinstance(url_or_engine, Engine):
        return url_or_engine.dialect.name == "sqlite"
    return url_or_engine.startswith("sqlite")


# A pooled server connection unused for longer than this is pinged before it is handed out.
IDLE_PING_SECONDS = 10.0


def make_engine(
    url: str | None = None, *, idle_ping_seconds: float = IDLE_PING_SECONDS, **kwargs: Any
) -> Engine:
    """An engine for ``url`` with the per-dialect settings this project relies on.

    Server databases: a pooled connection idle for over ``idle_ping_seconds`` is pinged
    at checkout and replaced if dead (a restarted server, a dropped idle connection).
    SQLAlchemy's ``pool_pre_ping`` would ping before every checkout: one more round trip
    on every request, most of them reusing a connection used milliseconds ago. A
    connection that dies while in steady use fails the one statement that finds out;
    SQLAlchemy then invalidates it and every older pooled connection, so the next
    checkout reconnects (tests/integration/test_connection_health.py).

    SQL parameters (buyer emails, key hashes, idempotency keys) never appear in an
    error's text or the engine's log: ``hide_parameters`` unless a caller asks."""
    url = database_url(url)
    kwargs.setdefault("hide_parameters", True)
    if is_sqlite(url):
        connect_args = kwargs.setdefault("connect_args", {})
        connect_args.setdefault("timeout", SQLITE_BUSY_SECONDS)
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("factory", QueuedConnection)
        if ":memory:" in url or url in ("sqlite://", "sqlite:///"):
            raise ValueError("use a SQLite file, not :memory: (migrations and sessions share it)")
        # Pooled (SQLAlchemy's default for a file): opening a connection and setting its
        # pragmas cost a third of a purchase's CPU when every request opened its own.
        # Locking does not depend on it: each transaction takes the write lock up front.
    else:
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    if is_sqlite(url):
        on_connect = _sqlite_on_connect(engine.url.database, connect_args["timeout"])
        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    elif not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _stamp_checkin)
        event.listen(engine, "checkout", _ping_if_idle(engine.dialect, idle_ping_seconds))
    return engine


def _stamp_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dialect: Dialect, idle_seconds: float) -> Any:
    def ping(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at <= idle_seconds:
            return  # new, or used moments ago
        try:
            dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # hand it out outside a transaction, as found
        except dialect.loaded_dbapi.Error as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc

    return ping


# How long a SQLite writer waits for the write lock before "database is locked"
# (connect_args' "timeout" sets it per engine).
SQLITE_BUSY_SECONDS = 30


def _sqlite_on_connect(database: str | None, busy_seconds: float) -> Any:
    queue = queue_for(database) if database else None

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin) so that transactions
        # take the write lock up front: no deadlock-prone read-then-upgrade.
        dbapi_connection.isolation_level = None
        if isinstance(dbapi_connection, QueuedConnection):
            dbapi_connection.writer_queue = queue
            dbapi_connection.writer_timeout = busy_seconds
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.close()

    return on_connect


# The execution option that makes a SQLite transaction begin without the write lock.
_READ_ONLY = "royalties_read_only"


def _sqlite_on_begin(conn: Any) -> None:
    if conn.get_execution_options().get(_READ_ONLY, False):
        conn.exec_driver_sql("BEGIN DEFERRED")
        return
    # Wait for the writers ahead in the queue (royalties.writer_queue), not in SQLite's
    # busy handler, which sleeps on for milliseconds after the lock is free.
    try:
        begin_write(conn.connection.dbapi_connection, conn.exec_driver_sql)
    except sqlite3.OperationalError as exc:  # waited the busy timeout: as SQLite would fail
        raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection of ``engine`` for reads only: on SQLite its transactions take no
    write lock (``BEGIN DEFERRED``), so a read never waits for, or holds up, a writer."""
    with engine.connect() as conn:
        yield conn.execution_options(**{_READ_ONLY: True})


@contextmanager
def first_read(session: Session) -> Iterator[Connection]:
    """A connection for a read that comes before a request's work, such as the API key's
    lookup; the work's own transaction begins after it.

    On SQLite, when the session has no transaction yet, the read gets one of its own that
    takes no write lock (``BEGIN DEFERRED``; in WAL mode readers never wait) and ends on
    leaving the block. Every other SQLite transaction takes the write lock up front, so
    a lookup in the request's transaction would hold the lock from the first line of the
    request to its commit, parsing and validating included, and the workers would take
    turns for whole requests. Elsewhere (PostgreSQL has no such lock) this is the
    session's own connection: the read is the first statement of its transaction."""
    if session.in_transaction() or session.get_bind().dialect.name != "sqlite":
        yield session.connection()
        return
    try:
        yield session.connection(execution_options={_READ_ONLY: True})
    finally:
        session.rollback()  # the read's own transaction, which wrote nothing


def insert_or_ignore(session: Session | str, table: Any) -> Any:
    """An ``INSERT .. ON CONFLICT DO NOTHING`` statement for the session's dialect (or
    the dialect named)."""
    dialect = session if isinstance(session, str) else session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database {dialect}")  # pragma: no cover


def table(model: type[Base]) -> Table:
    """The model's ``Table``, for Core statements on hot paths: an ``insert(Model)`` goes
    through the ORM's bulk machinery, which costs more than the SQL it sends."""
    return cast(Table, model.__table__)


def insert_rows(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *, or_ignore: bool = False
) -> None:
    """Insert ``rows`` (dicts with the same keys; string, integer, boolean, UTC datetime
    or NULL values, and a dict or list in a JSON column), in order; ``or_ignore`` skips
    rows that would break a unique constraint.

    On PostgreSQL, one ``INSERT .. SELECT`` from the rows sent as one JSON parameter
    (``json_to_recordset``): an executemany runs one statement per row, each with its
    own cost in SQLAlchemy, psycopg and the server, and the ledger writes several rows
    per posting on the hottest path; SQLAlchemy cannot cache a multi-row ``VALUES``.
    On SQLite, the driver's own executemany of a ``?`` statement built once, with the
    values as SQLAlchemy would store them: its per-row parameter processing cost half
    of what writing a sale's six events costs (still through SQLAlchemy's connection,
    so errors are its errors, parameters hidden). Either way a column left out gets its
    Python default, as SQLAlchemy's own INSERT would."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        columns = tuple(rows[0])
        stmt = _json_rows_insert(dialect, table, columns, or_ignore)
        conn.execute(stmt, {"rows": _json_rows(table, columns, rows)})
    else:  # sqlite3 runs an executemany in C, in process: cheaper than unpacking JSON
        sql, values = _sqlite_rows_insert(table, tuple(rows[0]), or_ignore)
        conn.exec_driver_sql(sql, [values(row) for row in rows])


def insert_rows_returning(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *returning: str,
    or_ignore: bool = False,
) -> list[Any]:
    """``insert_rows`` on PostgreSQL (one statement, whatever the number of rows) that
    returns the ``returning`` columns of each row inserted (``or_ignore``: of each row
    not skipped), in no promised order: the caller matches them to its rows by a column
    it gave."""
    if conn.dialect.name != "postgresql":
        raise NotImplementedError("insert_rows_returning is for PostgreSQL")
    if not rows:
        return []
    columns = tuple(rows[0])
    stmt = _json_rows_insert("postgresql", table, columns, or_ignore)
    returned = stmt.returning(*(table.c[name] for name in returning))
    return list(conn.execute(returned, {"rows": _json_rows(table, columns, rows)}).all())


def json_rows(table: Table, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``rows`` (dicts with the same keys) as ``json_rows_insert`` reads them."""
    return _json_rows(table, tuple(rows[0]), rows) if rows else []


def _json_rows(
    table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The rows as ``_json_rows_insert`` reads them: timestamps as naive UTC in ISO 8601,
    which PostgreSQL reads back exactly."""
    stamps = _timestamp_columns(table, columns)
    for name in _json_columns(table, columns):
        for row in rows:
            _json_value(table, name, row[name])
    if not stamps:
        return list(rows)
    return [{**row, **{c: _naive_utc_text(row[c]) for c in stamps}} for row in rows]


@lru_cache(maxsize=64)
def _rows_insert(dialect: str, table: Table, or_ignore: bool) -> Any:
    return insert_or_ignore(dialect, table) if or_ignore else insert(table)


def _check_columns(table: Table, columns: Sequence[str]) -> None:
    # The types both paths carry exactly (JSON: timestamps as text); a float column would
    # not. A JSON column's value is stored as the text json.dumps makes of it, as
    # SQLAlchemy stores it (on PostgreSQL: nested in the rows' JSON, the same text).
    for name in columns:
        if not isinstance(table.c[name].type, String | Integer | Boolean | UTCDateTime | JSON):
            raise TypeError(f"insert_rows cannot carry {table.name}.{name}")


@lru_cache(maxsize=64)
def _json_columns(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in columns if isinstance(table.c[name].type, JSON))


def _json_value(table: Table, name: str, value: Any) -> Any:
    """A JSON column's value; None is refused: SQLAlchemy stores it as JSON ``null``,
    JSON-carried rows as SQL NULL, and either could be what the caller meant."""
    if value is None:
        raise TypeError(f"insert_rows: {table.name}.{name} is None (JSON null or SQL NULL?)")
    return value


def _python_defaults(table: Table, columns: Sequence[str]) -> dict[str, Any]:
    """The columns left out that have a Python default (scalar or callable), with it."""
    defaults: dict[str, Any] = {}
    for col in table.columns:
        default = col.default
        if col.name in columns or default is None:
            continue
        if not (default.is_scalar or default.is_callable):
            raise TypeError(f"insert_rows cannot compute the default of {table.name}.{col.name}")
        defaults[col.name] = default
    return defaults


def _sqlite_json(table: Table, name: str, value: Any) -> str:
    """A JSON column's value as SQLAlchemy's SQLite ``JSON`` stores it."""
    return json.dumps(_json_value(table, name, value))


def _sqlite_datetime(value: datetime | None) -> str | None:
    """A UTC timestamp as SQLAlchemy's SQLite ``DATETIME`` stores it (naive UTC text)."""
    naive = naive_utc(value)
    return None if naive is None else naive.isoformat(" ", "microseconds")


@lru_cache(maxsize=64)
def _sqlite_rows_insert(table: Table, columns: tuple[str, ...], or_ignore: bool) -> tuple[str, Any]:
    """SQLAlchemy's ``INSERT`` for these columns, compiled once to its ``?`` text (the
    columns with Python defaults added, as SQLAlchemy adds them), and a function from a
    row to the parameters in the order of the placeholders."""
    _check_columns(table, columns)
    defaults = _python_defaults(table, columns)
    _check_columns(table, tuple(defaults))
    compiled = _rows_insert("sqlite", table, or_ignore).compile(
        dialect=_sqlite_dialect(), column_keys=list(columns)
    )
    order = tuple(compiled.positiontup or ())
    assert set(order) == {*columns, *defaults}, "every placeholder is a column or a default"
    converters = tuple(
        (i, _sqlite_datetime)
        if isinstance(table.c[name].type, UTCDateTime)
        else (i, partial(_sqlite_json, table, name))
        for i, name in enumerate(order)
        if isinstance(table.c[name].type, UTCDateTime | JSON)
    )
    if defaults:

        def values(row: Mapping[str, Any]) -> tuple[Any, ...]:
            out = [
                row[name]
                if name not in defaults
                else (defaults[name].arg if defaults[name].is_scalar else defaults[name].arg(None))
                for name in order
            ]
            for i, convert in converters:
                out[i] = convert(out[i])
            return tuple(out)

    else:  # every column given: one C call per row (on SQLite this runs in the write lock)
        pick = itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)

        def values(row: Mapping[str, Any]) -> tuple[Any, ...]:
            if not converters:
                return tuple(pick(row))
            out = list(pick(row))
            for i, convert in converters:
                out[i] = convert(out[i])
            return tuple(out)

    return str(compiled), values


@lru_cache(maxsize=1)
def _sqlite_dialect() -> Dialect:
    from sqlalchemy.dialects import sqlite

    return sqlite.dialect()


@lru_cache(maxsize=64)
def _timestamp_columns(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in columns if isinstance(table.c[name].type, UTCDateTime))


def _naive_utc_text(value: datetime | None) -> str | None:
    naive = naive_utc(value)
    return None if naive is None else naive.isoformat()


def json_records(param: str, columns: Sequence[tuple[str, Any]], alias: str = "r") -> Any:
    """SQL (PostgreSQL): the rows of the JSON parameter ``param`` as a table of these
    ``(name, type)`` columns (``json_to_recordset``)."""
    return (
        func.json_to_recordset(bindparam(param, type_=JSON))
        .table_valued(*(column(name, type_) for name, type_ in columns))
        .render_derived(name=alias, with_types=True)
    )


def json_rows_insert(
    table: Table, columns: tuple[str, ...], *, or_ignore: bool = False, param: str = "rows"
) -> Any:
    """``INSERT .. SELECT`` (PostgreSQL) of ``columns`` from the JSON parameter ``param``
    (rows as ``json_rows`` makes them): what ``insert_rows`` sends there, and a part of a
    statement of several (``.cte()``) when each part names its own ``param``."""
    _check_columns(table, columns)
    record = json_records(param, [(name, table.c[name].type) for name in columns], f"r_{param}")
    source = select(*(record.c[name] for name in columns))
    return _rows_insert("postgresql", table, or_ignore).from_select(columns, source)


@lru_cache(maxsize=64)
def _json_rows_insert(dialect: str, table: Table, columns: tuple[str, ...], or_ignore: bool) -> Any:
    return json_rows_insert(table, columns, or_ignore=or_ignore)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def lock_key(*parts: str) -> int:
    """The advisory lock key named by ``parts``, e.g. ``("payout", fan_id, currency)``:
    a signed 64-bit integer, the same in every process (unlike Python's ``hash``)."""
    name = json.dumps(parts, separators=(",", ":")).encode()  # unambiguous, whatever the parts
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


def advisory_lock_sql(key: Any, *, shared: bool = False, wait: bool = True) -> ColumnElement[Any]:
    """The PostgreSQL call that takes the transaction-scoped advisory lock ``key`` (a
    ``lock_key`` or a bind parameter holding one); with ``wait=False`` it is true when the
    lock was free and is now held. For a statement that reads more in the same round trip;
    ``advisory_lock`` runs it alone."""
    if wait:
        return func.pg_advisory_xact_lock_shared(key) if shared else func.pg_advisory_xact_lock(key)
    if shared:
        return func.pg_try_advisory_xact_lock_shared(key)
    return func.pg_try_advisory_xact_lock(key)


def advisory_lock(conn: Connection, *parts: str, shared: bool = False, wait: bool = True) -> bool:
    """Hold the advisory lock named by ``parts`` until the transaction ends: exclusive or
    ``shared``; waiting for it, or (``wait=False``) only if it is free. Returns whether it
    is held. On SQLite it is, without a statement: every transaction there holds the
    database's write lock from its ``BEGIN IMMEDIATE``."""
    if conn.dialect.name != "postgresql":
        return True
    taken = conn.execute(_advisory_lock(shared, wait), {"key": lock_key(*parts)}).scalar()
    return wait or bool(taken)


@lru_cache(maxsize=4)
def _advisory_lock(shared: bool, wait: bool) -> Select[Any]:
    return select(advisory_lock_sql(bindparam("key", type_=BigInteger), shared=shared, wait=wait))
