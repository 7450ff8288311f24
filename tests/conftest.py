"""Shared fixtures: a fresh, migrated database per test, on SQLite or PostgreSQL.

The schema always comes from the Alembic migrations (a broken migration fails every
test). It is built once per run into a template, then copied per test: a file copy on
SQLite, ``CREATE DATABASE .. TEMPLATE`` on PostgreSQL (when ``DATABASE_URL`` points at
a PostgreSQL server, which then only hosts throwaway databases named ``roy_t_*``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from royalties.db import database_url, make_engine, make_sessionmaker
from royalties.migrate import upgrade

_SERVER_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = _SERVER_URL.startswith(("postgres", "postgresql"))
_counter = itertools.count()


def pytest_report_header() -> str:
    return f"database: {'PostgreSQL' if ON_POSTGRES else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ON_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL (CI does)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def admin_engine() -> Engine:
    url = make_url(database_url(_SERVER_URL))
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=None)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ON_POSTGRES:
        path = tmp_path_factory.mktemp("db") / "template.db"
        upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    name = f"roy_t_tmpl_{uuid.uuid4().hex[:8]}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url(_SERVER_URL)).set(database=name)
    upgrade(url.render_as_string(hide_password=False))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db_url(_template: str, tmp_path: Any) -> Iterator[str]:
    """The URL of a fresh database with the full schema, dropped after the test."""
    if not ON_POSTGRES:
        path = tmp_path / "test.db"
        shutil.copyfile(_template, path)
        yield f"sqlite:///{path}"
        return
    name = f"roy_t_{os.getpid()}_{next(_counter)}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"'))
    try:
        yield (
            make_url(database_url(_SERVER_URL))
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with make_sessionmaker(engine)() as s:
        yield s


@pytest.fixture
def app(engine: Engine, db_url: str) -> Flask:
    return create_test_app(engine, db_url)


def create_test_app(engine: Engine, db_url: str, **overrides: Any) -> Flask:
    from api.app import create_app

    config = {"TESTING": True, "DATABASE_URL": db_url, "ENGINE": engine}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api(client: FlaskClient, session: Session) -> Any:
    from tests.helpers import ApiDriver

    return ApiDriver(client, session)
