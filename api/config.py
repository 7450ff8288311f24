"""Configuration from the environment (SPEC section 10); tests pass overrides."""

from __future__ import annotations

import os
import re
import secrets
from typing import Any

from royalties import schedule
from royalties.background import DEFAULTS as JOB_DEFAULTS
from royalties.db import database_url
from royalties.fraud.detectors import FraudConfig
from royalties.payouts import DEFAULT_CONCURRENCY, Minimums
from royalties.webhooks.delivery import DEFAULT_SCHEDULE as DEFAULT_RETRY_SCHEDULE
from royalties.webhooks.delivery import parse_schedule


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _bool_env(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"{name} must be true or false, got {raw!r}")


# Rate limits in Flask-Limiter's notation ("20/minute", "3 per 1 second"); see api/limits.py.
# Unset, each takes its first value, or under TESTING the second: generous enough for the
# test suite's bursts from one address, while the limiter still runs on every request.
RATE_LIMIT_DEFAULTS: dict[str, tuple[str, str]] = {
    "RATELIMIT_SIGNUP": ("20/minute", "2000/minute"),  # POST /v1/fans, per address
    "RATELIMIT_LINKS": ("60/minute", "6000/minute"),  # POST /v1/share-links, per address
    "RATELIMIT_CLICKS": ("600/minute", "60000/minute"),  # GET /l/<code>, per address
    "RATELIMIT_LOGIN": ("10/minute", "1000/minute"),  # dashboard sign-in attempts, per address
    # sign-in links asked for: per client address, and per email address asked about
    "RATELIMIT_LOGIN_EMAIL": ("10/hour", "1000/hour"),
    "RATELIMIT_LOGIN_EMAIL_RECIPIENT": ("5/hour", "500/hour"),
    "RATELIMIT_API": ("1200/minute", "120000/minute"),  # every other keyed call, per key
    # purchases and refunds, per (storefront) key: 1,000 a second, the throughput goal
    "RATELIMIT_SALES": ("60000/minute", "6000000/minute"),
}


def fraud_from_env() -> FraudConfig:
    """Fraud-signal thresholds (see royalties/fraud/detectors.py), each overridable."""
    d = FraudConfig()
    return FraudConfig(
        signup_window_minutes=_int_env("FRAUD_SIGNUP_WINDOW_MINUTES", d.signup_window_minutes),
        signup_min=_int_env("FRAUD_SIGNUP_MIN", d.signup_min),
        signup_share_pct=_int_env("FRAUD_SIGNUP_SHARE_PCT", d.signup_share_pct),
        click_window_minutes=_int_env("FRAUD_CLICK_WINDOW_MINUTES", d.click_window_minutes),
        click_min=_int_env("FRAUD_CLICK_MIN", d.click_min),
        burst_minutes=_int_env("FRAUD_BURST_MINUTES", d.burst_minutes),
        burst_min=_int_env("FRAUD_BURST_MIN", d.burst_min),
    )


def _float_env(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"{name} must not be negative, got {raw!r}")
    return value


def minimums_by_currency_from_env() -> dict[str, int]:
    """Every ``MIN_PAYOUT_<CUR>`` (e.g. MIN_PAYOUT_JPY): a currency's own minimum."""
    overrides = {}
    for name in sorted(os.environ):
        currency = name.removeprefix("MIN_PAYOUT_")
        if name.startswith("MIN_PAYOUT_") and currency:
            if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
                raise SystemExit(f"{name}: the suffix must be a currency code such as USD")
            overrides[currency] = _positive(name, _int_env(name, 0))
    return overrides


def minimums(config: Any) -> Minimums:
    """The payout minimums a config sets: ``MIN_PAYOUT`` and ``MIN_PAYOUT_BY_CURRENCY``."""
    return Minimums.from_config(config)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise SystemExit(f"{name} must be at least 1, got {value}")
    return value


def _country_env(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip().upper() or default
    if not (len(raw) == 2 and raw.isalpha() and raw.isascii()):
        raise SystemExit(f"{name} must be an ISO 3166 alpha-2 country code such as US")
    return raw


def _cron_env(name: str) -> str | None:
    raw = " ".join(os.environ.get(name, "").split())
    if not raw:
        return None
    if not schedule.is_cron(raw):
        raise SystemExit(
            f"{name} must be a cron expression of five fields, such as '0 6 * * 1' "
            f"(Mondays at 06:00 UTC), got {raw!r}"
        )
    return raw


def _schedule_env(name: str) -> tuple[int, ...]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULT_RETRY_SCHEDULE
    try:
        return parse_schedule(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}: {exc}") from None


def _positive_float_env(name: str, default: float) -> float:
    value = _float_env(name)
    if value is None:
        return default
    if value <= 0:
        raise SystemExit(f"{name} must be above 0, got {value:g}")
    return value


def _every_env(name: str) -> int:
    return _positive(name, _int_env(name, JOB_DEFAULTS[name]))


_BRACKETED = re.compile(r"\[([^\]]+)\]:(\d+)")
_EVERYWHERE = ("0.0.0.0", "::", "")  # noqa: S104 - names, not a bind


def base_url_for_bind(bind: str) -> str | None:
    """The address a server bound to gunicorn's ``HOST:PORT`` is reached at, as a
    ``PUBLIC_BASE_URL``. Listening on every address (``0.0.0.0``, ``::``) it is reached
    at 127.0.0.1 from this machine. None for a bind that is not a host and port
    (``unix:/path``, ``fd://3``), which has no URL to give."""
    if bind.startswith("unix:") or "://" in bind:
        return None
    bracketed = _BRACKETED.fullmatch(bind)
    if bracketed:
        host, port = bracketed.groups()
    elif bind.count(":") == 1:
        host, port = bind.split(":")
    elif ":" not in bind:
        host, port = bind, "8000"  # gunicorn's port when the bind names none
    else:
        return None
    if not port.isdigit():
        return None
    if host in _EVERYWHERE:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def metrics_port(bind: str | None) -> int | None:
    """The port of ``METRICS_BIND`` (``HOST:PORT``), None when unset; SystemExit when it
    is not a host and a port."""
    if not bind:
        return None
    bracketed = _BRACKETED.fullmatch(bind)
    if bracketed:
        host, port = bracketed.groups()
    else:
        host, _, port = bind.rpartition(":")
    if not host or (":" in host and not bracketed) or not port.isdigit() or int(port) > 65535:
        raise SystemExit(f"METRICS_BIND must be HOST:PORT, got {bind!r}")
    return int(port)


def from_env() -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url(),
        "STRIPE_API_KEY": os.environ.get("STRIPE_API_KEY", ""),
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE") or None,
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        "FRAUD": fraud_from_env(),
        "PLATFORM_FEE_BPS": _int_env("PLATFORM_FEE_BPS", 0),
        "MIN_PAYOUT": _positive("MIN_PAYOUT", _int_env("MIN_PAYOUT", 1000)),
        "MIN_PAYOUT_BY_CURRENCY": minimums_by_currency_from_env(),
        # Where the platform's Stripe account is: other countries' accounts are created
        # under the recipient service agreement (cross-border payouts).
        "PLATFORM_COUNTRY": _country_env("PLATFORM_COUNTRY", "US"),
        # Transfers in flight at once in a payout run (royalties payouts run --concurrency).
        "PAYOUT_CONCURRENCY": _int_env("PAYOUT_CONCURRENCY", DEFAULT_CONCURRENCY),
        # Requests per second of each kind the gateway allows itself; unset: 90% of
        # Stripe's documented limit for the key's mode (100 live, 25 test).
        "STRIPE_MAX_REQUESTS_PER_SECOND": _float_env("STRIPE_MAX_REQUESTS_PER_SECOND"),
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        "CLICK_HASH_SALT": os.environ.get("CLICK_HASH_SALT", "royalties-click"),
        # Clicks written in batches (royalties/clicks.py): every this many seconds, 0 for
        # a transaction per click. Unset: 0.25, or 0 under TESTING (api.extensions.init_clicks).
        "CLICK_BATCH_SECONDS": _float_env("CLICK_BATCH_SECONDS"),
        # How long a process keeps where an active link sends its clicks (batched only).
        "CLICK_LINK_CACHE_SECONDS": _float_env("CLICK_LINK_CACHE_SECONDS"),
        # Signs the dashboard's session cookie. Unset: a random key per process, so
        # sessions end with the process (``royalties serve`` shares one across workers).
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_hex(32),
        # Sign-in by email (royalties/sign_in.py, royalties/notify/mail.py): unset, the
        # mail is written to the log instead. The URL may hold a password: never logged.
        "SMTP_URL": os.environ.get("SMTP_URL") or None,
        "MAIL_FROM": os.environ.get("MAIL_FROM") or "Fan royalties <no-reply@localhost>",
        # Addresses that sign in as admin (comma-separated); fans and artists sign in
        # with the email on their own row.
        "ADMIN_EMAILS": os.environ.get("ADMIN_EMAILS", ""),
        # How long the sign-in link of an artist's invitation works (a sign-in link
        # asked for on the login page works 15 minutes).
        "INVITE_LINK_HOURS": _positive("INVITE_LINK_HOURS", _int_env("INVITE_LINK_HOURS", 72)),
        # The worker's background jobs (royalties/background.py, docs/notifications.md):
        # how often each runs; scheduled payouts only when PAYOUT_SCHEDULE (cron, UTC) is set.
        "FAN_MAIL_SECONDS": _every_env("FAN_MAIL_SECONDS"),
        "MATURE_MINUTES": _every_env("MATURE_MINUTES"),
        "FRAUD_SCAN_MINUTES": _every_env("FRAUD_SCAN_MINUTES"),
        "INSIGHTS_REFRESH_MINUTES": _every_env("INSIGHTS_REFRESH_MINUTES"),
        "PAYOUT_SCHEDULE": _cron_env("PAYOUT_SCHEDULE"),
        # Outbound webhooks (royalties/webhooks/, docs/webhooks.md): seconds between
        # attempts, each post's timeout, how long an endpoint may fail before it is
        # disabled, endpoints in flight at once per worker, how often the worker looks.
        "WEBHOOK_RETRY_SCHEDULE": _schedule_env("WEBHOOK_RETRY_SCHEDULE"),
        "WEBHOOK_TIMEOUT_SECONDS": _positive_float_env("WEBHOOK_TIMEOUT_SECONDS", 5.0),
        "WEBHOOK_DISABLE_AFTER_HOURS": _positive_float_env("WEBHOOK_DISABLE_AFTER_HOURS", 120.0),
        "WEBHOOK_CONCURRENCY": _positive(
            "WEBHOOK_CONCURRENCY", _int_env("WEBHOOK_CONCURRENCY", 16)
        ),
        "WEBHOOK_SECONDS": _positive_float_env("WEBHOOK_SECONDS", 1.0),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool_env("SESSION_COOKIE_SECURE", False),
        # Reverse proxies in front of the app that append to X-Forwarded-For/-Proto. With 0
        # (the default) the client address is the connection's; behind a proxy every
        # client would then share its address, in rate limits and click/fraud hashes.
        "TRUSTED_PROXIES": _int_env("TRUSTED_PROXIES", 0),
        # Set, /metrics answers only on this (second) listener of ``royalties serve``, to
        # anyone who reaches it; unset, it answers on the main one to an admin key.
        "METRICS_BIND": os.environ.get("METRICS_BIND") or None,
        # Bodies above this are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": _int_env("MAX_BODY_BYTES", 64 * 1024),
        # ... except a batch of purchases (up to 500 of them), which may take this.
        "MAX_BATCH_BODY_BYTES": _int_env("MAX_BATCH_BODY_BYTES", 1024 * 1024),
        # Rate limits (api/limits.py); a limit left None takes its default from above.
        "RATELIMIT_ENABLED": _bool_env("RATELIMIT_ENABLED", True),
        **{name: os.environ.get(name) or None for name in RATE_LIMIT_DEFAULTS},
        "RATELIMIT_STORAGE_URI": os.environ.get("RATELIMIT_STORAGE_URI") or "memory://",
        "RATELIMIT_KEY_PREFIX": os.environ.get("RATELIMIT_KEY_PREFIX", "royalties"),
        "RATELIMIT_STRATEGY": os.environ.get("RATELIMIT_STRATEGY") or "fixed-window",
        # flask-smorest / OpenAPI
        "API_TITLE": "Fan royalty and referral reward engine",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "JSON_SORT_KEYS": False,
    }
