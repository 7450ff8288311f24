"""Stripe Connect onboarding in a browser: the "Set up payouts" button on the fan's
page, and the two pages Stripe sends the fan's browser back to with a GET.

Stripe calls neither page with an API key, and its documentation asks the refresh page
to authenticate before it makes a new link (its URL may leak). So each URL carries a
token of its own: the fan's id and the time the fan started, signed with the app's
``SECRET_KEY`` for this purpose (salt). The links the pages hand on carry the same
start time, so a leaked URL works for ``TOKEN_MAX_AGE`` after the fan pressed the
button, not forever. The refresh page makes a new account link and redirects to it;
the return page asks Stripe where the account stands (coming back does not mean
onboarding is complete) and says so in plain words.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from api.extensions import db, stripe_gateway
from api.web import signin
from api.web.views import bp
from royalties.errors import Forbidden, ValidationFailed
from royalties.payments.stripe import AccountInfo
from royalties.payouts import connect_account, onboarding_link, refresh_account

TOKEN_MAX_AGE = timedelta(hours=24)
_SALT = "payout-onboarding"
_COUNTRY = re.compile(r"[A-Z]{2}")

# What Stripe's ``requirements.currently_due`` entries ask for, in a fan's words.
_NEEDS = (
    ("business_type", "whether you are paid as a person or a business"),
    ("external_account", "a bank account to pay out to"),
    ("individual.verification", "an identity document"),
    ("individual.", "your personal details"),
    ("tos_acceptance", "accepting Stripe's terms of service"),
    ("business_profile", "a few words about what you do"),
)


def onboarding_urls(fan_id: str, started: int | None = None) -> tuple[str, str]:
    """The ``refresh_url`` and ``return_url`` of a new account link for this fan, for
    an onboarding the fan started at ``started`` (a Unix time; default now)."""
    token = _token(fan_id, started)
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    return (
        base + url_for("web.payouts_refresh", token=token),
        base + url_for("web.payouts_return", token=token),
    )


@bp.post("/fans/<fan_id>/payouts/setup")
@signin.signed_in
def payouts_setup(fan_id: str) -> Any:
    """The fan's "Set up payouts" button: make (once) the Stripe account, then go to
    Stripe's onboarding with a fresh link."""
    if signin.check_may_view("fan", fan_id).role != "fan":
        raise Forbidden("only the fan can connect a payout account")
    country = (request.form.get("country") or "").strip().upper() or None
    if country is not None and not _COUNTRY.fullmatch(country):
        raise ValidationFailed("The country must be a two-letter code such as US or FR.")
    refresh, back = onboarding_urls(fan_id)
    account = connect_account(
        db.session,
        stripe_gateway(),
        fan_id=fan_id,
        refresh_url=refresh,
        return_url=back,
        country=country,
        platform_country=current_app.config["PLATFORM_COUNTRY"],
    )
    return redirect(account.onboarding_url, code=303)


@bp.get("/payouts/refresh/<token>")
def payouts_refresh(token: str) -> Any:
    """Stripe's ``refresh_url``: the link expired or was used; make a new one."""
    fan_id, started = _fan(token)
    refresh, back = onboarding_urls(fan_id, started)
    url = onboarding_link(
        db.session, stripe_gateway(), fan_id=fan_id, refresh_url=refresh, return_url=back
    )
    return redirect(url, code=302)


@bp.get("/payouts/return/<token>")
def payouts_return(token: str) -> Any:
    """Stripe's ``return_url``: the fan left Stripe's form; say where things stand."""
    fan_id, started = _fan(token)
    account = refresh_account(db.session, stripe_gateway(), fan_id=fan_id)
    return render_template(
        "web/payouts_return.html",
        fan_id=fan_id,
        account=account,
        needs=_needs(account) if account else [],
        again=url_for("web.payouts_refresh", token=_token(fan_id, started)),
    )


def _needs(account: AccountInfo) -> list[str]:
    out: list[str] = []
    for item in account.currently_due:
        words = next((w for prefix, w in _NEEDS if item.startswith(prefix)), item)
        if words not in out:
            out.append(words)
    return out


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key or "", salt=_SALT)


def _token(fan_id: str, started: int | None) -> str:
    return _serializer().dumps([fan_id, int(time.time()) if started is None else started])


class LinkExpired(Forbidden):
    """Raised when an onboarding page's token is older than ``TOKEN_MAX_AGE``."""

    title = "Link expired"


class LinkInvalid(Forbidden):
    """Raised when an onboarding page's token does not verify."""

    title = "Link not valid"


def _fan(token: str) -> tuple[str, int]:
    """The fan and start time a token was signed for, if it verifies and is fresh."""
    max_age = int(TOKEN_MAX_AGE.total_seconds())
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except SignatureExpired:
        payload = None
    except BadSignature:
        raise LinkInvalid("This payout setup link is not valid.") from None
    else:
        if not (
            isinstance(payload, list)
            and len(payload) == 2
            and isinstance(payload[0], str)
            and isinstance(payload[1], int)
        ):
            raise LinkInvalid("This payout setup link is not valid.")
    if payload is None or time.time() - payload[1] > max_age:
        raise LinkExpired(
            "This payout setup link has expired. Open your fan page in the dashboard and "
            "continue setting up payouts from there."
        )
    return payload[0], payload[1]
