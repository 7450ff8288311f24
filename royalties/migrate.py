"""Apply the Alembic migrations shipped in the ``migrations`` package.

``upgrade()`` is what ``royalties db upgrade`` and the test suite call, so the schema
the tests run on is exactly the one production gets.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

import migrations
from royalties.db import database_url


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # '%' would be read as interpolation by configparser.
    cfg.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_heads(url: str | None = None) -> tuple[str, ...]:
    from alembic.script import ScriptDirectory

    return tuple(ScriptDirectory.from_config(alembic_config(url)).get_heads())


def applied_heads(conn: Connection) -> set[str]:
    """The revisions the database on ``conn`` is at (empty before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(conn).get_current_heads())
