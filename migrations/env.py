"""Alembic environment: the URL comes from the caller's config or DATABASE_URL."""

from __future__ import annotations

from alembic import context

import royalties.models  # noqa: F401  (registers every table on Base.metadata)
from royalties.db import Base, database_url, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(config.get_main_option("sqlalchemy.url")),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        on_version_apply=_check_foreign_keys if sqlite else (),
    )
    if not sqlite:
        with context.begin_transaction():
            context.run_migrations()
        return
    # A batch operation rebuilds a SQLite table (copy, drop, rename), and dropping a table
    # that other tables' foreign keys point at fails while they are enforced. SQLite
    # ignores this pragma inside a transaction, so it is set before the migrations run
    # (each in its own transaction on SQLite), and every foreign key is checked before
    # each migration commits (_check_foreign_keys).
    if connection.in_transaction():
        raise RuntimeError("SQLite migrations need a connection outside a transaction")
    _sqlite_foreign_keys(connection, "OFF")
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        _sqlite_foreign_keys(connection, "ON")


def _sqlite_foreign_keys(connection, state: str) -> None:  # type: ignore[no-untyped-def]
    # On the driver's connection: SQLAlchemy's own would begin a transaction first.
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={state}")


def _check_foreign_keys(*, ctx, step, **_kw) -> None:  # type: ignore[no-untyped-def]
    broken = ctx.connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"migration {step} breaks foreign keys: {broken[:10]}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
