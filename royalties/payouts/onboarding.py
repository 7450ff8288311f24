"""Connecting a fan's Stripe account: the Express account, its onboarding links, and
what the account can do (``payouts_enabled``, the ``transfers`` capability).

A fan has at most one account, created once: Stripe dedupes concurrent first calls on
the idempotency key, and a call without a clear answer is followed by a look for the
account, never by a blind retry (Stripe replays a saved 500 under its key, so the fan's
next try uses a new key). No transaction is open across a call to Stripe; what Stripe
says is stored in a short transaction after.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from royalties.db import utcnow
from royalties.errors import NotFound, PaymentDeclined, PaymentUncertain
from royalties.models import Fan
from royalties.payments.stripe import AccountInfo, StripeGateway
from royalties.services._tx import unit_of_work


@dataclass(frozen=True)
class PayoutAccount:
    account_id: str
    payouts_enabled: bool
    transfers_active: bool
    onboarding_url: str


def connect_account(
    session: Session,
    gateway: StripeGateway,
    *,
    fan_id: str,
    refresh_url: str,
    return_url: str,
    country: str | None = None,
    platform_country: str = "US",
) -> PayoutAccount:
    """Create the fan's Express account once (a retry reuses it) and a fresh onboarding
    link. An account in another country than the platform's is created under the
    recipient service agreement, which Stripe requires for cross-border payouts."""
    fan = _fan(session, fan_id)
    account_id, email, attempts = fan.stripe_account_id, fan.email, fan.account_attempts
    session.rollback()  # nothing open across the calls to Stripe
    if account_id is None:
        where = (country or platform_country).upper()
        account_id = _create_account(
            session,
            gateway,
            fan_id,
            email=email,
            attempts=attempts,
            country=where,
            recipient=where != platform_country.upper(),
        )
    url = gateway.create_account_link(
        account_id=account_id, refresh_url=refresh_url, return_url=return_url
    )
    fan = _fan(session, fan_id)
    return PayoutAccount(account_id, fan.payouts_enabled, fan.transfers_active, url)


def _create_account(
    session: Session,
    gateway: StripeGateway,
    fan_id: str,
    *,
    email: str | None,
    attempts: int,
    country: str,
    recipient: bool,
) -> str:
    """Create the fan's account; returns the id stored. Stripe dedupes concurrent first
    calls on the key. A call that gets no clear answer may still have made the account,
    and Stripe replays a saved 500 under its key: so look for the account; not found,
    the fan's next try uses a new key (``account_attempts``) and the error is raised."""
    key = f"account-{fan_id}" + (f"-{attempts}" if attempts else "")
    started = int(utcnow().timestamp()) - 60
    try:
        account = gateway.create_express_account(
            fan_id=fan_id, email=email, idempotency_key=key, country=country, recipient=recipient
        )
    except PaymentUncertain:
        found = _look_for_account(gateway, fan_id, started)
        if found is None:
            with unit_of_work(session):
                _fan(session, fan_id, lock=True).account_attempts += 1
            raise
        account = found
    with unit_of_work(session):
        fan = _fan(session, fan_id, lock=True)
        if fan.stripe_account_id is None:  # a concurrent call may have stored one first
            store_account(fan, account)
        return str(fan.stripe_account_id)


def _look_for_account(gateway: StripeGateway, fan_id: str, since: int) -> AccountInfo | None:
    try:
        return gateway.find_account(fan_id=fan_id, created_since=since)
    except (PaymentUncertain, PaymentDeclined):
        return None


def onboarding_link(
    session: Session, gateway: StripeGateway, *, fan_id: str, refresh_url: str, return_url: str
) -> str:
    """A new onboarding link for a fan that already has an account (the refresh page)."""
    account_id = _fan(session, fan_id).stripe_account_id
    session.rollback()  # nothing open across the call to Stripe
    if account_id is None:
        raise NotFound(
            "No Stripe account has been set up for payouts yet: press “Set up payouts” on "
            "the fan page."
        )
    return gateway.create_account_link(
        account_id=account_id, refresh_url=refresh_url, return_url=return_url
    )


def refresh_account(session: Session, gateway: StripeGateway, *, fan_id: str) -> AccountInfo | None:
    """Ask Stripe where the fan's account stands now and store it (the return page).
    None when the fan has no account yet."""
    account_id = _fan(session, fan_id).stripe_account_id
    session.rollback()  # nothing open across the call to Stripe
    if account_id is None:
        return None
    account = gateway.retrieve_account(account_id)
    with unit_of_work(session):
        store_account(_fan(session, fan_id, lock=True), account)
    return account


def _fan(session: Session, fan_id: str, *, lock: bool = False) -> Fan:
    fan = session.get(Fan, fan_id, with_for_update=lock, populate_existing=lock)
    if fan is None:
        raise NotFound(f"fan {fan_id} does not exist")
    return fan


def store_account(fan: Fan, account: AccountInfo) -> None:
    """Record what Stripe says of the fan's account. The caller commits."""
    fan.stripe_account_id = account.id
    fan.payouts_enabled = account.payouts_enabled
    fan.transfers_active = account.transfers_active
