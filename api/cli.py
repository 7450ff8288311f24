"""The ``royalties`` command line (SPEC section 10)."""

from __future__ import annotations

import os
import sys

import click

from royalties.db import database_url, make_engine, make_sessionmaker


@click.group(help="Fan royalty and referral reward engine.")
def main() -> None:
    pass


@main.group(help="Database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply the Alembic migrations to DATABASE_URL (safe to run again).")
def db_upgrade() -> None:
    from royalties.migrate import upgrade

    url = database_url()
    upgrade(url)
    click.echo(f"database is at the latest schema: {_redact(url)}")


@main.group("admin-key", help="Admin API keys.")
def admin_key() -> None:
    pass


@admin_key.command("create", help="Print a new admin API key (shown once, alone on the last line).")
def admin_key_create() -> None:
    from royalties.services.accounts import create_admin_key

    _require_schema()
    engine = make_engine()
    try:
        with make_sessionmaker(engine)() as session:
            key = create_admin_key(session)
    finally:
        engine.dispose()
    click.echo("New admin API key (store it now; it is not shown again):", err=True)
    click.echo(key)


@main.command(help="Serve the API with gunicorn (wsgi:app).")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="HOST:PORT")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def serve(bind: str, workers: int) -> None:
    _require_schema()
    args = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers)]
    args += ["--access-logfile", "-", "wsgi:app"]
    os.execv(sys.executable, args)  # noqa: S606 - replaces this process with gunicorn


@main.command(help="Replay SPEC section 9 on a fresh SQLite file through the real API code.")
@click.option(
    "--database",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite file to (re)create [default: ./royalties-demo.db]",
)
def demo(database: str | None) -> None:
    from pathlib import Path

    from api import demo as demo_module

    path = Path(database) if database else demo_module.default_path()
    try:
        code = demo_module.run(path)
    except demo_module.DemoError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


def _require_schema() -> None:
    """Exit with a clear message when the database is not migrated to the latest schema."""
    from alembic.runtime.migration import MigrationContext

    from royalties.migrate import current_heads

    url = database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:
        raise click.ClickException(f"cannot open the database {_redact(url)}: {exc}") from None
    finally:
        engine.dispose()
    if current != set(current_heads(url)):
        raise click.ClickException(
            f"the database {_redact(url)} is not at the latest schema: run 'royalties db upgrade'"
        )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
