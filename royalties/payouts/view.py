"""A payout as the API shows it (``GET /v1/payouts``) and as its events carry it: one
view, with no imports beyond the model, so the machine that emits the events and the
readers that list payouts can both use it."""

from __future__ import annotations

from typing import Any

from royalties.models import Payout

__all__ = ["payout_view"]


def payout_view(payout: Payout) -> dict[str, Any]:
    return {
        "id": payout.id,
        "run_id": payout.run_id,
        "fan_id": payout.fan_id,
        "currency": payout.currency,
        "amount": payout.amount,
        "state": payout.state,
        "stripe_transfer_id": payout.stripe_transfer_id,
        "reversed_amount": payout.reversed_amount,
        "failure_reason": payout.failure_reason,
        "attempts": payout.attempts,
        "created_at": payout.created_at,
        "updated_at": payout.updated_at,
    }
