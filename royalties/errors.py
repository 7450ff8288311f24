"""One exception tree for the domain.

Every error a service can raise on purpose derives from :class:`RoyaltiesError`.
Each carries a stable machine ``code`` (used as the problem+json ``code`` and in the
``type`` URI) and a human ``detail``; the API layer maps each class to one HTTP status
in one place (``api/errors.py``). Anything that is *not* a ``RoyaltiesError`` is a bug
and is reported as a bare 500 without internals.
"""

from __future__ import annotations

from typing import Any


class RoyaltiesError(Exception):
    """Base of every deliberate domain error."""

    code = "royalties_error"

    def __init__(self, detail: str, *, fields: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields = fields or {}


class Unauthenticated(RoyaltiesError):
    """Raised when a request carries no API key, or one that is unknown or revoked."""

    code = "unauthorized"


class NotFound(RoyaltiesError):
    """Raised when an id names nothing the caller may see."""

    code = "not_found"


class Forbidden(RoyaltiesError):
    """Raised when the caller is authenticated but may not touch this resource."""

    code = "forbidden"


class Conflict(RoyaltiesError):
    """Raised when the request clashes with the current state (duplicate, in flight)."""

    code = "conflict"


class ValidationFailed(RoyaltiesError):
    """Raised when input is well-formed but inconsistent (e.g. currency mismatch)."""

    code = "invalid"


class GraphError(ValidationFailed):
    """Raised when a sponsor assignment breaks the forest rules (self, loop, reassign)."""

    code = "graph_rule"


class AttributionError(RoyaltiesError):
    """Raised when a sale cannot be attributed as SPEC section 3 requires."""

    code = "attribution"


class PlanError(ValidationFailed):
    """Raised when a reward plan breaks SPEC section 4 (levels, rates, hold days)."""

    code = "invalid_plan"


class MoneyError(ValidationFailed):
    """Raised for amounts that are not integer minor units or currencies that are not ISO 4217."""

    code = "invalid_money"


class LedgerError(RoyaltiesError):
    """Raised when a transaction would break the ledger's invariants (unbalanced, mixed)."""

    code = "ledger"


class RefundError(ValidationFailed):
    """Raised when a refund exceeds what is left of a purchase."""

    code = "refund_exceeds_remaining"


class IdempotencyError(RoyaltiesError):
    """Base of idempotency-key misuse."""

    code = "idempotency"


class IdempotencyKeyMissing(IdempotencyError):
    """Raised when a request that requires an ``Idempotency-Key`` header has none."""

    code = "idempotency_key_missing"


class IdempotencyKeyReused(IdempotencyError):
    """Raised when a key is replayed with a different request body."""

    code = "idempotency_key_reused"


class IdempotencyInFlight(IdempotencyError):
    """Raised when a request with the same key is still being processed."""

    code = "idempotency_in_flight"


class PayoutError(RoyaltiesError):
    """Base of payout failures."""

    code = "payout"


class RunInProgress(PayoutError):
    """Raised when a payout run is started while another one is unfinished and has
    made progress recently (``royalties/payouts/tracking.py``)."""

    code = "run_in_progress"


class PaymentDeclined(PayoutError):
    """Raised when Stripe definitely refused a call (4xx): nothing happened there."""

    code = "payment_declined"


class PaymentUncertain(PayoutError):
    """Raised when the outcome of a Stripe call is unknown (timeout, connection, 5xx).

    The caller must retry later with the same idempotency key, never re-key.
    """

    code = "payment_uncertain"


class PayoutAccountMissing(PayoutError):
    """Raised when a fan has no connected Stripe account yet."""

    code = "payout_account_missing"


class WebhookError(PayoutError):
    """Raised when a webhook's signature or timestamp does not verify."""

    code = "webhook_signature"


class WebhookEventInvalid(WebhookError):
    """Raised when a correctly signed webhook holds an event we cannot act on (a field
    missing, of the wrong type, or too long to store)."""

    code = "webhook_event_invalid"


class NotConfigured(RoyaltiesError):
    """Raised when a feature needs configuration that is absent (e.g. STRIPE_API_KEY)."""

    code = "not_configured"
