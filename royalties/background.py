"""The engine's periodic background work, as jobs for ``royalties worker``.

- ``fan_mail.send``: the fan mail queue (``royalties.notify.fans``), every
  ``FAN_MAIL_SECONDS``. A queue with leases, so every worker takes part.
- ``rewards.mature``: rewards whose hold has passed become available (and their
  ``reward.available`` events are written), every ``MATURE_MINUTES``, in its own
  transaction.
- ``fraud.scan``: the batch fraud signals, the same scan as ``royalties fraud scan``,
  every ``FRAUD_SCAN_MINUTES``.
- ``insights.refresh``: artists whose cached insights no longer match their sales are
  recomputed, a few a round, every ``INSIGHTS_REFRESH_MINUTES``.
- ``payouts.scheduled``: a payout run, as ``royalties payouts run`` makes it, at each
  time the cron expression ``PAYOUT_SCHEDULE`` names (UTC); only when it is set.

Every job but the mail queue is claimed per due time in ``worker_schedule``
(``royalties.schedule``): with several workers each due time runs once, on one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from royalties import schedule
from royalties.db import make_sessionmaker
from royalties.errors import NotConfigured
from royalties.fraud.detectors import FraudConfig
from royalties.fraud.signals import scan
from royalties.notify.fans import send_fan_mail
from royalties.payments.stripe import gateway_from_config
from royalties.payouts import DEFAULT_CONCURRENCY, run_payouts
from royalties.payouts.payable import Minimums
from royalties.rewards import mature_due
from royalties.services._tx import unit_of_work
from royalties.services.insights import refresh_stale
from royalties.worker_jobs import Job

#: Each setting's default (``api/config.py`` reads them from the environment).
DEFAULTS: dict[str, Any] = {
    "FAN_MAIL_SECONDS": 15,
    "MATURE_MINUTES": 1,
    "FRAUD_SCAN_MINUTES": 15,
    "INSIGHTS_REFRESH_MINUTES": 10,
    "PAYOUT_SCHEDULE": None,
}
INSIGHTS_PER_ROUND = 20
# How often a worker looks whether the payout schedule is due: cron's own granularity.
PAYOUT_CHECK_EVERY = timedelta(minutes=1)

Work = Callable[[Engine, Mapping[str, Any], datetime], int]


def _setting(config: Mapping[str, Any], name: str) -> Any:
    value = config.get(name)
    return DEFAULTS[name] if value is None else value


def mature_rewards(engine: Engine, _config: Mapping[str, Any], now: datetime) -> int:
    """Move every reward due at ``now`` to available; returns how many."""
    with make_sessionmaker(engine)() as session, unit_of_work(session):
        return mature_due(session, now=now)


def fraud_scan(engine: Engine, config: Mapping[str, Any], now: datetime) -> int:
    """The batch fraud scan with the configured thresholds; returns new signals."""
    with make_sessionmaker(engine)() as session:
        report = scan(session, config.get("FRAUD") or FraudConfig(), now=now)
    return report.click_floods + report.storefront_bursts


def refresh_insights(engine: Engine, _config: Mapping[str, Any], now: datetime) -> int:
    """Recompute the insights of stale artists; returns how many."""
    with make_sessionmaker(engine)() as session:
        return refresh_stale(session, now=now, limit=INSIGHTS_PER_ROUND)


def scheduled_payouts(engine: Engine, config: Mapping[str, Any], now: datetime) -> int:
    """One payout run with the configuration ``royalties payouts run`` uses; returns how
    many payouts it settled or sent."""
    gateway = gateway_from_config(config)
    with make_sessionmaker(engine)() as session:
        report = run_payouts(
            session,
            gateway,
            min_payout=Minimums.from_config(config),
            now=now,
            concurrency=int(config.get("PAYOUT_CONCURRENCY") or DEFAULT_CONCURRENCY),
        )
    return len(report.outcomes)


def once_per_due_time(name: str, when: str, work: Work) -> Work:
    """``work``, run only by the worker that claims the due time (see royalties.schedule)."""

    def run(engine: Engine, config: Mapping[str, Any], now: datetime) -> int:
        with make_sessionmaker(engine)() as session:
            if not schedule.claim(session, name, when, now):
                return 0
        return work(engine, config, now)

    run.__name__ = f"{work.__name__}_once_per_due_time"
    run.__doc__ = work.__doc__
    return run


def _periodic(name: str, every: timedelta, work: Work) -> Job:
    return Job(name, every, once_per_due_time(name, schedule.interval(every), work))


def jobs(config: Mapping[str, Any]) -> list[Job]:
    """The background jobs ``config`` asks for. Raises NotConfigured for a
    ``PAYOUT_SCHEDULE`` that is no cron expression, or without ``STRIPE_API_KEY``."""

    def minutes(name: str) -> timedelta:
        return timedelta(minutes=int(_setting(config, name)))

    found = [
        Job(
            "fan_mail.send",
            timedelta(seconds=int(_setting(config, "FAN_MAIL_SECONDS"))),
            send_fan_mail,
        ),
        _periodic("rewards.mature", minutes("MATURE_MINUTES"), mature_rewards),
        _periodic("fraud.scan", minutes("FRAUD_SCAN_MINUTES"), fraud_scan),
        _periodic("insights.refresh", minutes("INSIGHTS_REFRESH_MINUTES"), refresh_insights),
    ]
    cron = _setting(config, "PAYOUT_SCHEDULE")
    if cron:
        if not schedule.is_cron(cron):
            raise NotConfigured(
                f"PAYOUT_SCHEDULE {cron!r} is not a cron expression (five fields, such as "
                "'0 6 * * 1' for Mondays at 06:00 UTC)"
            )
        if not config.get("STRIPE_API_KEY"):
            raise NotConfigured("PAYOUT_SCHEDULE is set, but payouts need STRIPE_API_KEY")
        found.append(
            Job(
                "payouts.scheduled",
                PAYOUT_CHECK_EVERY,
                once_per_due_time("payouts.scheduled", cron, scheduled_payouts),
            )
        )
    return found
