"""The ``royalties`` command line (SPEC section 10)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from royalties.db import database_url, make_engine, make_sessionmaker


@click.group(help="Fan royalty and referral reward engine.")
def main() -> None:
    from api import logs

    logs.setup(default_level="WARNING")  # LOG_LEVEL, LOG_FORMAT; redacted (api/logs.py)


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
    from royalties.audit import COMMAND_LINE
    from royalties.services.accounts import create_admin_key

    _require_schema()
    engine = make_engine()
    try:
        with make_sessionmaker(engine)() as session:
            key = create_admin_key(session, actor=COMMAND_LINE)
    finally:
        engine.dispose()
    click.echo("New admin API key (store it now; it is not shown again):", err=True)
    click.echo(key)


@main.command(help="Serve the API with gunicorn (wsgi:app).")
@click.option(
    "--bind",
    default="127.0.0.1:8000",
    show_default=True,
    help="HOST:PORT to listen on. With PUBLIC_BASE_URL unset, share links and Stripe's "
    "return pages use http://HOST:PORT (http://127.0.0.1:PORT when HOST is 0.0.0.0 or ::).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--graceful-timeout",
    default=30,
    show_default=True,
    type=click.IntRange(1, 3600),
    help="seconds that requests in flight get to finish after SIGTERM",
)
def serve(bind: str, workers: int, graceful_timeout: int) -> None:
    """Every file this instance needs on the host (gunicorn's control socket, the
    workers' heartbeat files, the Prometheus counters) is in a private directory of its
    own, so several instances (and workers) on one host never share one; gunicorn
    removes it on exit. SIGTERM stops accepting, lets requests in flight finish (up to
    --graceful-timeout) and exits 0."""
    import tempfile
    from urllib.parse import urlsplit

    from api.config import base_url_for_bind, metrics_port
    from api.gunicorn_conf import INSTANCE_DIR_ENV

    _require_schema()
    if not os.environ.get("PUBLIC_BASE_URL"):
        url = base_url_for_bind(bind)
        if url:
            os.environ["PUBLIC_BASE_URL"] = url  # the workers read it from here
    if not os.environ.get("SECRET_KEY"):
        # Every worker must sign dashboard sessions with the same key.
        import secrets

        os.environ["SECRET_KEY"] = secrets.token_hex(32)
    metrics_bind = os.environ.get("METRICS_BIND") or None
    port = metrics_port(metrics_bind)  # the app tells the listeners apart by port
    if port is not None and urlsplit(base_url_for_bind(bind) or "").port == port:
        raise click.BadParameter(f"METRICS_BIND needs a port of its own, not {port}")
    instance = tempfile.mkdtemp(prefix="royalties-serve-")  # mode 0700, new every start
    metrics_dir = os.path.join(instance, "prometheus")
    os.mkdir(metrics_dir)
    os.environ[INSTANCE_DIR_ENV] = instance
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # read by the workers
    args = [sys.executable, "-m", "gunicorn", "--config", "python:api.gunicorn_conf"]
    args += ["--bind", bind, *(["--bind", metrics_bind] if metrics_bind else [])]
    args += ["--workers", str(workers), "--graceful-timeout", str(graceful_timeout)]
    args += ["--control-socket", os.path.join(instance, "gunicorn.ctl")]
    args += ["--worker-tmp-dir", instance, "wsgi:app"]
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


@main.group(help="Payouts through Stripe Connect.")
def payouts() -> None:
    pass


@payouts.command("run", help="One payout run, with a progress bar and a summary.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="transfers in flight at once [default: PAYOUT_CONCURRENCY, or 32]",
)
def payouts_run(concurrency: int | None) -> None:
    """Exit status: 0 when every payable fan was paid; 1 when a payout failed, was left
    unresolved at Stripe, or was held back because the platform balance was short."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from api.config import from_env, minimums
    from api.extensions import gateway_from_config
    from royalties.audit import COMMAND_LINE
    from royalties.errors import RoyaltiesError
    from royalties.payouts import not_paid_view, run_payouts

    _require_schema()
    config = from_env()
    console = Console(stderr=True)
    engine = make_engine()
    try:
        gateway = gateway_from_config(config)
        with (
            make_sessionmaker(engine)() as session,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar,
        ):
            task = bar.add_task("paying fans", total=None)

            def tick(event: str, n: int) -> None:
                if event == "total":
                    bar.update(task, total=n)
                else:
                    bar.advance(task, n)

            report = run_payouts(
                session,
                gateway,
                min_payout=minimums(config),
                progress=tick,
                concurrency=concurrency or config["PAYOUT_CONCURRENCY"],
                actor=COMMAND_LINE,
            )
    except RoyaltiesError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()
    out = Console()
    table = Table(title="Payouts sent")
    table.add_column("state")
    table.add_column("payouts", justify="right")
    for state in ("paid", "submitted", "failed"):
        table.add_row(state, str(report.count(state)))
    out.print(table)
    reasons = not_paid_view(report)
    if reasons:
        skipped = Table(title="Not paid in this run")
        skipped.add_column("why")
        skipped.add_column("fans", justify="right")
        for row in reasons:
            skipped.add_row(row["description"], str(row["count"]))
        out.print(skipped)
    for currency, amount in sorted(report.short.items()):
        click.echo(
            f"platform balance short: {amount} {currency} (minor units) left available for "
            "the next run; top up the platform's Stripe balance"
        )
    for outcome in report.outcomes:
        if outcome.state in ("submitted", "failed"):
            click.echo(f"{outcome.payout_id}: {outcome.state}: {outcome.detail}")
    click.echo(f"run id: {report.run_id}")  # on a line of its own, to copy whole
    if not report.complete:
        click.echo(
            "not everything payable was paid: see above (GET /v1/payouts/<id> has each "
            "payout's audit trail; 'royalties payouts reconcile' settles what Stripe has)",
            err=True,
        )
        sys.exit(1)


@payouts.command("reconcile", help="Compare Stripe transfers with the ledger's paid payouts.")
@click.option("--since", type=click.DateTime(), required=True, help="start (UTC), inclusive")
@click.option("--until", type=click.DateTime(), default=None, help="end (UTC), exclusive [now]")
def payouts_reconcile(since: Any, until: Any) -> None:
    from datetime import UTC, datetime

    from api.config import from_env
    from api.extensions import gateway_from_config
    from royalties.errors import RoyaltiesError
    from royalties.payouts import reconcile, settle_open

    _require_schema()
    start = since.replace(tzinfo=UTC)
    end = until.replace(tzinfo=UTC) if until else datetime.now(UTC)
    engine = make_engine()
    try:
        gateway = gateway_from_config(from_env())
        with make_sessionmaker(engine)() as session:
            # Open payouts first: what Stripe has is settled, so it is no mismatch below.
            for _settled, sentence in settle_open(session, gateway):
                click.echo(sentence)
            problems = list(reconcile(session, gateway, since=start, until=end))
    except RoyaltiesError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()
    for problem in problems:
        click.echo(f"MISMATCH {problem}")
    if problems:
        click.echo(f"{len(problems)} mismatch(es) between Stripe and the ledger", err=True)
        sys.exit(1)
    click.echo(
        f"Stripe and the ledger agree from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    )


@main.group(help="Tools for trying the engine locally.")
def dev() -> None:
    pass


@dev.command(
    "stripe",
    help="Run the local fake Stripe (the one the tests use) until Ctrl-C, and print the "
    "variables that point 'royalties serve' and 'royalties payouts run' at it.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=12111, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--forward-to",
    default="http://127.0.0.1:8000/v1/webhooks/stripe",
    show_default=True,
    help="where to send the fake's signed webhooks; '' sends none",
)
def dev_stripe(host: str, port: int, forward_to: str) -> None:
    from urllib.parse import urlsplit

    from api.dev import local_stripe

    target = urlsplit(forward_to)
    if forward_to and (target.scheme not in ("http", "https") or not target.netloc):
        raise click.BadParameter("must be an http(s) URL, or ''", param_hint="--forward-to")
    try:
        local_stripe.serve(host, port, forward_to=forward_to or None, echo=_echo_now)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None


def _echo_now(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()  # a pipe (a test, `| tee`) sees each line as it happens


@main.command(help="Run the background work: webhooks, fan mail, maturing, fraud scan, insights.")
@click.option("--once", is_flag=True, help="one round of every job, then exit")
def worker(once: bool) -> None:
    """Deliver webhooks and fan mail and run the periodic jobs (docs/webhooks.md,
    docs/notifications.md) until SIGTERM or Ctrl-C; then finish the deliveries in
    flight and exit 0. Several workers share the work on PostgreSQL; on SQLite run one."""
    import signal
    import threading

    from api import logs
    from api.config import from_env
    from royalties import worker as loop
    from royalties.errors import RoyaltiesError

    _require_schema()
    logs.setup(default_level="INFO")  # what each job did; LOG_LEVEL=WARNING for less
    config = from_env()
    try:
        jobs, deliverer = loop.all_jobs(config)
    except RoyaltiesError as exc:
        raise click.ClickException(exc.detail) from None
    stop = threading.Event()

    def stopping(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            click.echo(
                f"worker: {signal.Signals(signum).name}, finishing what is in hand", err=True
            )
        stop.set()

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    engine = make_engine()
    names = ", ".join(job.name for job in jobs)
    click.echo(f"worker: started (pid {os.getpid()}); jobs: {names}", err=True)
    try:
        loop.run(engine, config, jobs, stop=stop, once=once)
        if once:
            loop.wait_idle(deliverer, timeout=deliverer.settings.lease.total_seconds())
    finally:
        deliverer.stop()
        engine.dispose()
    click.echo("worker: stopped", err=True)


@main.group(help="Fraud signals.")
def fraud() -> None:
    pass


@fraud.command("scan", help="Look for click floods and storefront bursts; record signals.")
def fraud_scan() -> None:
    from api.config import fraud_from_env
    from royalties.fraud.signals import scan

    _require_schema()
    engine = make_engine()
    try:
        with make_sessionmaker(engine)() as session:
            report = scan(session, fraud_from_env())
    finally:
        engine.dispose()
    click.echo(
        f"new signals: {report.click_floods} click flood(s), "
        f"{report.storefront_bursts} storefront burst(s); see GET /v1/review"
    )


def _require_schema() -> None:
    """Exit with a clear message when the database is not migrated to the latest schema."""
    from royalties.migrate import applied_heads, current_heads

    url = database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = applied_heads(conn)
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
