"""Configuration from the environment (SPEC section 10); tests pass overrides."""

from __future__ import annotations

import os
from typing import Any

from royalties.db import database_url
from royalties.fraud import FraudConfig


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def fraud_from_env() -> FraudConfig:
    """Fraud-signal thresholds (see royalties/fraud.py), each overridable."""
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


def from_env() -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url(),
        "STRIPE_API_KEY": os.environ.get("STRIPE_API_KEY", ""),
        "STRIPE_API_BASE": os.environ.get("STRIPE_API_BASE") or None,
        "STRIPE_WEBHOOK_SECRET": os.environ.get("STRIPE_WEBHOOK_SECRET", ""),
        "FRAUD": fraud_from_env(),
        "PLATFORM_FEE_BPS": _int_env("PLATFORM_FEE_BPS", 0),
        "MIN_PAYOUT": _int_env("MIN_PAYOUT", 1000),
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        "CLICK_HASH_SALT": os.environ.get("CLICK_HASH_SALT", "royalties-click"),
        # Bodies above this are refused with 413 before any parsing.
        "MAX_CONTENT_LENGTH": _int_env("MAX_BODY_BYTES", 64 * 1024),
        # flask-smorest / OpenAPI
        "API_TITLE": "Fan royalty and referral reward engine",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "JSON_SORT_KEYS": False,
    }
