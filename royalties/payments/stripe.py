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
* The API key never appears in an error message (it is scrubbed defensively).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import stripe

from royalties.errors import PaymentDeclined, PaymentUncertain, WebhookError

# Stripe answers these while the outcome is still open; the rest of 4xx is a refusal.
_UNCERTAIN_4XX = frozenset({409, 429})
_LIST_PAGE_SIZE = 100


@dataclass(frozen=True)
class AccountInfo:
    """A connected (Express) account as far as the engine cares."""

    id: str
    payouts_enabled: bool


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
    """Typed access to the few Stripe calls the engine needs."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        *,
        timeout_seconds: float = 20.0,
        client: stripe.StripeClient | None = None,
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

    # -- connected accounts -------------------------------------------------------

    def create_express_account(
        self, *, fan_id: str, email: str | None, idempotency_key: str
    ) -> AccountInfo:
        """Create an Express account for a fan, asking for the transfers capability."""
        params: stripe.params.AccountCreateParams = {
            "type": "express",
            "metadata": {"fan_id": fan_id},
            "capabilities": {"transfers": {"requested": True}},
        }
        if email:
            params["email"] = email
        try:
            account = self._client.v1.accounts.create(
                params, options={"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            self._raise(exc)
        return _account_info(account)

    def retrieve_account(self, account_id: str) -> AccountInfo:
        """Fetch a connected account (e.g. to refresh ``payouts_enabled``)."""
        try:
            account = self._client.v1.accounts.retrieve(account_id)
        except stripe.StripeError as exc:
            self._raise(exc)
        return _account_info(account)

    def create_account_link(self, *, account_id: str, refresh_url: str, return_url: str) -> str:
        """Return a one-time onboarding URL for the account's owner."""
        try:
            link = self._client.v1.account_links.create(
                {
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        except stripe.StripeError as exc:
            self._raise(exc)
        return str(link.url)

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
        try:
            transfer = self._client.v1.transfers.create(
                {
                    "amount": amount,
                    "currency": currency.lower(),
                    "destination": destination,
                    "transfer_group": transfer_group,
                    "metadata": dict(metadata),
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            self._raise(exc)
        return _transfer_info(transfer)

    def retrieve_transfer(self, transfer_id: str) -> TransferInfo:
        """Fetch one transfer (e.g. to see whether it was reversed)."""
        try:
            transfer = self._client.v1.transfers.retrieve(transfer_id)
        except stripe.StripeError as exc:
            self._raise(exc)
        return _transfer_info(transfer)

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
        try:
            for transfer in self._client.v1.transfers.list(params).auto_paging_iter():
                yield _transfer_info(transfer)
        except stripe.StripeError as exc:
            self._raise(exc)

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

    # -- errors ---------------------------------------------------------------------

    def _raise(self, exc: stripe.StripeError) -> NoReturn:
        """Translate an SDK error into PaymentDeclined or PaymentUncertain."""
        message = self._scrub(exc.user_message or type(exc).__name__)
        status = exc.http_status
        fields: dict[str, Any] = {"http_status": status} if status is not None else {}
        if exc.code:
            fields["stripe_code"] = exc.code
        if (
            isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError)
            or status in _UNCERTAIN_4XX
        ):
            uncertain = True
        elif isinstance(
            exc,
            stripe.InvalidRequestError
            | stripe.CardError
            | stripe.PermissionError
            | stripe.AuthenticationError
            | stripe.IdempotencyError,
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
    return AccountInfo(id=account.id, payouts_enabled=bool(account.payouts_enabled))


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
