"""The one gateway to Stripe.

Everything the engine asks of Stripe goes through :class:`StripeGateway`, a thin,
typed wrapper over the official SDK's ``stripe.StripeClient``. The design rules:

* **No global state.** We never touch ``stripe.api_key`` or ``stripe.api_base``; each
  gateway owns its client, so tests point one at a local fake (``api_base``) or inject
  a ready-made client.
* **No SDK objects leak out.** Calls return small frozen dataclasses
  (:class:`AccountInfo`, :class:`TransferInfo`) or plain dicts, so the domain never
  depends on how a given SDK version models a response.
* **The SDK never retries on its own** (``max_network_retries=0``). A retry is a
  decision of the payout run: it calls again with the *same* idempotency key (the
  payout id), so Stripe replays the first result instead of paying twice.
* **Every failure is one of three domain errors**, because the caller must act
  differently on each:

  - :class:`PaymentDeclined` -- Stripe definitely refused (HTTP 4xx other than 409
    and 429): nothing happened there, the money can go back to ``available``.
  - :class:`PaymentUncertain` -- we do not know (timeout, connection error, 409
    "key in use", 429, 5xx, unreadable answer): the transfer may exist, so the
    payout stays submitted and is retried later with the same key, never re-keyed.
  - :class:`WebhookError` -- a webhook whose signature or timestamp does not verify.

  409 is deliberately *uncertain*: Stripe answers it while another request with the
  same idempotency key is still running, i.e. exactly when the transfer may succeed.
  ``idempotency_error`` (the key was used before with other parameters) is uncertain
  too: whatever ran under that key first may have made the transfer.
* **Rate limits are the gateway's business.** Requests are paced per kind (reads and
  writes, as Stripe counts them) by a shared :class:`Pacer`, and a 429 -- which Stripe
  answers before doing anything, saving nothing under the key -- is retried with the
  same key after an exponential, jittered back-off, up to ``rate_limit_wait`` seconds
  in all. Only then is it reported, as uncertain.
* The API key never appears in an error message (it is scrubbed defensively).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import stripe

from royalties.errors import NotConfigured, PaymentDeclined, PaymentUncertain, WebhookError

# Stripe answers these while the outcome is still open; the rest of 4xx is a refusal.
_UNCERTAIN_4XX = frozenset({409, 429})
_LIST_PAGE_SIZE = 100
# Stripe's documented request rates per second (guide "Rate limits"), per kind; the
# gateway paces itself a little under them so a run seldom meets a 429 at all.
LIVE_MODE_RATE = 100
TEST_MODE_RATE = 25
_HEADROOM = 0.9

T = TypeVar("T")


def default_rate(api_key: str) -> float:
    """Requests per second of each kind to pace at for this key's mode."""
    test_mode = api_key.startswith(("sk_test_", "rk_test_"))
    return (TEST_MODE_RATE if test_mode else LIVE_MODE_RATE) * _HEADROOM


class Pacer:
    """A token bucket shared by threads: at most ``rate`` acquisitions a second, with a
    burst of at most one second's worth. ``rate`` None or 0: no pacing."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate or 0.0
        self._lock = threading.Lock()
        self._tokens = min(self.rate, 1.0)
        self._stamp = time.monotonic()

    def acquire(self) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True)
class AccountInfo:
    """A connected (Express) account as far as the engine cares.

    ``payable`` is what a transfer needs *and* what paying out to the fan's bank needs:
    ``payouts_enabled`` and the ``transfers`` capability ``active`` are separate flags
    at Stripe, and a transfer is refused without the capability."""

    id: str
    payouts_enabled: bool
    transfers_active: bool = False
    details_submitted: bool = False
    country: str | None = None
    currently_due: tuple[str, ...] = ()
    disabled_reason: str | None = None

    @property
    def payable(self) -> bool:
        return self.payouts_enabled and self.transfers_active


@dataclass(frozen=True)
class TransferInfo:
    """A Stripe Transfer to a connected account; ``currency`` is upper-case ISO 4217."""

    id: str
    amount: int
    currency: str
    destination: str
    transfer_group: str | None
    created: int
    reversed: bool
    amount_reversed: int
    metadata: dict[str, str] = field(default_factory=dict)


class StripeGateway:
    """Typed access to the few Stripe calls the engine needs. Safe to share between
    threads (the SDK's HTTP client keeps one connection pool per thread)."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        *,
        timeout_seconds: float = 20.0,
        client: stripe.StripeClient | None = None,
        requests_per_second: float | None = None,
        rate_limit_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api_key = api_key
        if client is None:
            base = api_base.rstrip("/") if api_base else None
            client = stripe.StripeClient(
                api_key,
                # StripeClient ignores the global stripe.api_base; None keeps Stripe's own.
                base_addresses={"api": base, "connect": base, "files": base} if base else None,
                max_network_retries=0,
                # requests applies this to connecting and to each read of the answer.
                http_client=stripe.RequestsClient(timeout=timeout_seconds),
            )
        self._client = client
        rate = default_rate(api_key) if requests_per_second is None else requests_per_second
        self._pacers = {"read": Pacer(rate), "write": Pacer(rate)}
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep

    # -- connected accounts -------------------------------------------------------

    def create_express_account(
        self,
        *,
        fan_id: str,
        email: str | None,
        idempotency_key: str,
        country: str | None = None,
        recipient: bool = False,
    ) -> AccountInfo:
        """Create an Express account for a fan, asking for the transfers capability.

        ``recipient``: the account is in another country than the platform's, which
        Stripe allows for payouts only under the recipient service agreement."""
        params: stripe.params.AccountCreateParams = {
            "type": "express",
            "metadata": {"fan_id": fan_id},
            "capabilities": {"transfers": {"requested": True}},
        }
        if email:
            params["email"] = email
        if country:
            params["country"] = country
        if recipient:
            params["tos_acceptance"] = {"service_agreement": "recipient"}
        account = self._call(
            "write",
            lambda: self._client.v1.accounts.create(
                params, options={"idempotency_key": idempotency_key}
            ),
        )
        return _account_info(account)

    def find_account(self, *, fan_id: str, created_since: int) -> AccountInfo | None:
        """The connected account made for ``fan_id`` (``metadata.fan_id``) since a time:
        how an account-creation call that got no clear answer is resolved."""
        params: stripe.params.AccountListParams = {
            "created": {"gte": created_since},
            "limit": _LIST_PAGE_SIZE,
        }
        while True:
            page = self._call("read", lambda p=dict(params): self._client.v1.accounts.list(p))  # type: ignore[misc]
            items = list(page.data)
            for account in items:
                metadata = account.metadata.to_dict() if account.metadata is not None else {}
                if metadata.get("fan_id") == fan_id:
                    return _account_info(account)
            if not page.has_more or not items:
                return None
            params["starting_after"] = items[-1].id

    def retrieve_account(self, account_id: str) -> AccountInfo:
        """Fetch a connected account as Stripe sees it now."""
        return _account_info(
            self._call("read", lambda: self._client.v1.accounts.retrieve(account_id))
        )

    def create_account_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        """Return a one-time onboarding URL for the account's owner."""
        link = self._call(
            "write",
            lambda: self._client.v1.account_links.create(
                {
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            ),
        )
        return str(link.url)

    # -- the platform's balance ---------------------------------------------------

    def available_balance(self) -> dict[str, int]:
        """The platform's available balance per currency (upper-case ISO 4217)."""
        balance = self._call("read", lambda: self._client.v1.balance.retrieve())
        out: dict[str, int] = {}
        for item in balance.available or []:
            currency = str(item.currency).upper()
            out[currency] = out.get(currency, 0) + int(item.amount)
        return out

    # -- transfers ------------------------------------------------------------------

    def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> TransferInfo:
        """Move ``amount`` minor units to a connected account, exactly once per key."""
        transfer = self._call(
            "write",
            lambda: self._client.v1.transfers.create(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            ),
        )
        return _transfer_info(transfer)

    def retrieve_transfer(self, transfer_id: str) -> TransferInfo:
        """Fetch one transfer (e.g. to see whether it was reversed)."""
        return _transfer_info(
            self._call("read", lambda: self._client.v1.transfers.retrieve(transfer_id))
        )

    def find_transfer(
        self, *, destination: str, transfer_group: str, payout_id: str
    ) -> TransferInfo | None:
        """The transfer made for ``payout_id``, if Stripe has one: the destination's
        transfers in the group, matched on the payout id in their metadata. This, not an
        idempotency key Stripe may have forgotten, is what proves a payout was paid."""
        params: stripe.params.TransferListParams = {
            "destination": destination,
            "transfer_group": transfer_group,
            "limit": _LIST_PAGE_SIZE,
        }
        for transfer in self._list(params):
            if transfer.metadata.get("payout_id") == payout_id:
                return transfer
        return None

    def list_transfers(
        self, *, created_gte: int | None = None, created_lt: int | None = None
    ) -> Iterator[TransferInfo]:
        """Yield every transfer in the window, newest first, fetching pages lazily."""
        created: stripe.params.TransferListParamsCreated = {}
        if created_gte is not None:
            created["gte"] = created_gte
        if created_lt is not None:
            created["lt"] = created_lt
        params: stripe.params.TransferListParams = {"limit": _LIST_PAGE_SIZE}
        if created:
            params["created"] = created
        return self._list(params)

    def _list(self, params: stripe.params.TransferListParams) -> Iterator[TransferInfo]:
        """Page through a transfer list, each page one paced read."""
        while True:
            page = self._call("read", lambda p=dict(params): self._client.v1.transfers.list(p))  # type: ignore[misc]
            items = list(page.data)
            for transfer in items:
                yield _transfer_info(transfer)
            if not page.has_more or not items:
                return
            params["starting_after"] = items[-1].id

    # -- webhooks -------------------------------------------------------------------

    def construct_event(
        self, payload: bytes, sig_header: str, secret: str, tolerance: int = 300
    ) -> dict[str, Any]:
        """Verify a webhook with the SDK and return the event as a plain dict."""
        if tolerance <= 0:
            # The SDK treats a falsy tolerance as "accept any age": no replay guard.
            raise ValueError("tolerance must be a positive number of seconds")
        try:
            event = self._client.construct_event(payload, sig_header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            raise WebhookError(f"webhook rejected: {exc.user_message}") from exc
        except ValueError as exc:  # bad JSON, bad UTF-8, or not a snapshot event
            raise WebhookError(f"webhook payload is not a Stripe event: {exc}") from exc
        body = event.to_dict()
        if not isinstance(body.get("id"), str) or not isinstance(body.get("type"), str):
            raise WebhookError("webhook payload is not a Stripe event: no id or type")
        return body

    # -- calls and errors -------------------------------------------------------------

    def _call(self, kind: str, request: Callable[[], T]) -> T:
        """Make one paced request; a 429 is retried (same request, same key) with
        jittered exponential back-off until ``rate_limit_wait`` seconds have passed."""
        pacer = self._pacers[kind]
        deadline = time.monotonic() + self._rate_limit_wait
        backoff = 0.25
        while True:
            pacer.acquire()
            try:
                return request()
            except stripe.RateLimitError as exc:
                if time.monotonic() + backoff > deadline:
                    self._raise(exc)
                self._sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 8.0)
            except stripe.StripeError as exc:
                self._raise(exc)

    def _raise(self, exc: stripe.StripeError) -> NoReturn:
        """Translate an SDK error into PaymentDeclined or PaymentUncertain."""
        message = self._scrub(exc.user_message or type(exc).__name__)
        status = exc.http_status
        fields: dict[str, Any] = {"http_status": status} if status is not None else {}
        if exc.code:
            fields["stripe_code"] = exc.code
        if (
            isinstance(
                exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.IdempotencyError
            )
            or status in _UNCERTAIN_4XX
        ):
            uncertain = True
        elif isinstance(
            exc,
            stripe.InvalidRequestError
            | stripe.CardError
            | stripe.PermissionError
            | stripe.AuthenticationError,
        ):
            uncertain = False
        else:  # APIError and anything newer: only a plain 4xx is a definite refusal
            uncertain = status is None or not 400 <= status < 500
        if uncertain:
            raise PaymentUncertain(
                f"Stripe outcome unknown ({type(exc).__name__}): {message}", fields=fields
            ) from exc
        raise PaymentDeclined(f"Stripe refused the request: {message}", fields=fields) from exc

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _account_info(account: stripe.Account) -> AccountInfo:
    body = account.to_dict()
    capabilities = body.get("capabilities") or {}
    requirements = body.get("requirements") or {}
    return AccountInfo(
        id=account.id,
        payouts_enabled=bool(body.get("payouts_enabled")),
        transfers_active=capabilities.get("transfers") == "active",
        details_submitted=bool(body.get("details_submitted")),
        country=body.get("country"),
        currently_due=tuple(str(r) for r in (requirements.get("currently_due") or ())),
        disabled_reason=requirements.get("disabled_reason"),
    )


def _transfer_info(transfer: stripe.Transfer) -> TransferInfo:
    destination = transfer.destination
    destination_id = destination if isinstance(destination, str) else getattr(destination, "id", "")
    metadata = transfer.metadata.to_dict() if transfer.metadata is not None else {}
    return TransferInfo(
        id=transfer.id,
        amount=int(transfer.amount),
        currency=str(transfer.currency).upper(),
        destination=str(destination_id or ""),
        transfer_group=transfer.transfer_group,
        created=int(transfer.created),
        reversed=bool(transfer.reversed),
        amount_reversed=int(transfer.amount_reversed),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


def gateway_from_config(config: Mapping[str, Any]) -> StripeGateway:
    """The gateway a configuration names (``STRIPE_API_KEY``, ``STRIPE_API_BASE``,
    ``STRIPE_MAX_REQUESTS_PER_SECOND``): the web app, the command line and the worker
    build theirs here. Raises NotConfigured without a key."""
    key = config.get("STRIPE_API_KEY")
    if not key:
        raise NotConfigured("payouts need STRIPE_API_KEY to be set")
    return StripeGateway(
        key,
        config.get("STRIPE_API_BASE") or None,
        requests_per_second=config.get("STRIPE_MAX_REQUESTS_PER_SECOND"),
    )
