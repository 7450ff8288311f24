"""Stripe Connect onboarding, payout runs, payouts and Stripe webhooks."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal, own, require
from api.extensions import db, stripe_gateway
from api.schemas.payouts import (
    PayoutAccountOut,
    PayoutDetail,
    PayoutPage,
    PayoutQuery,
    PayoutRunOut,
    StripeEvent,
    WebhookAck,
    unreadable_parts,
)
from royalties.errors import NotConfigured, WebhookError, WebhookEventInvalid
from royalties.models import Payout
from royalties.services import payouts

blp = Blueprint("payouts", __name__, url_prefix="/v1", description="Payouts through Stripe Connect")


@blp.route("/fans/<fan_id>/payout-account")
class PayoutAccount(MethodView):
    @require("fan")
    @blp.response(200, PayoutAccountOut)
    def post(self, fan_id: str) -> Any:
        """Create (once) the fan's Stripe Express account and a fresh onboarding link"""
        own(fan_id, what="fan")
        return payouts.connect_account(
            db.session,
            stripe_gateway(),
            fan_id=fan_id,
            public_base_url=current_app.config["PUBLIC_BASE_URL"],
        )


@blp.route("/payout-runs")
class PayoutRuns(MethodView):
    @require("admin")
    @blp.response(201, PayoutRunOut)
    def post(self) -> dict[str, Any]:
        """Run payouts now (admin): every fan at or above the minimum, one transfer each"""
        report = payouts.run_payouts(
            db.session, stripe_gateway(), min_payout=current_app.config["MIN_PAYOUT"]
        )
        ids = [o.payout_id for o in report.outcomes]
        rows = {p.id: p for p in db.session.query(Payout).filter(Payout.id.in_(ids))} if ids else {}
        return {"id": report.run_id, "payouts": [payouts.payout_view(rows[i]) for i in ids]}


@blp.route("/payouts")
class PayoutList(MethodView):
    @require("admin", "fan")
    @blp.arguments(PayoutQuery(), location="query")
    @blp.response(200, PayoutPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Payouts, newest first (admin: all, or one fan's; a fan: its own)"""
        principal = current_principal()
        fan_id = principal.owner_id if principal.role == "fan" else query["fan_id"]
        items, cursor = payouts.list_payouts(
            db.session, fan_id=fan_id, limit=query["limit"], cursor=query["cursor"]
        )
        return {"items": items, "next_cursor": cursor}


@blp.route("/payouts/<payout_id>")
class PayoutItem(MethodView):
    @require("admin", "fan")
    @blp.response(200, PayoutDetail)
    def get(self, payout_id: str) -> dict[str, Any]:
        """One payout with its audit trail (admin, or the fan it pays)"""
        principal = current_principal()
        only = principal.owner_id if principal.role == "fan" else None
        return payouts.get_payout(db.session, payout_id, fan_id=only)


@blp.route("/webhooks/stripe")
class StripeWebhook(MethodView):
    @blp.response(200, WebhookAck)
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Stripe-Signature",
                "required": True,
                "description": "Stripe's signature of the raw body with the endpoint secret",
                "schema": {"type": "string", "minLength": 1},
            }
        ],
        requestBody={"required": True, "content": {"application/json": {"schema": StripeEvent}}},
        responses={
            400: {"description": "Signature missing, wrong or stale; or an event we cannot read"}
        },
    )
    def post(self) -> dict[str, Any]:
        """Signed Stripe events: account.updated, transfer.reversed (verified, handled once)"""
        secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
        if not secret:
            raise NotConfigured("webhooks need STRIPE_WEBHOOK_SECRET to be set")
        signature = request.headers.get("Stripe-Signature")
        if not signature:
            raise WebhookError("missing Stripe-Signature header")
        gateway = _verifier()
        event = gateway.construct_event(request.get_data(), signature, secret)
        unreadable = unreadable_parts(event)
        if unreadable:
            raise WebhookEventInvalid("the signed event cannot be handled", fields=unreadable)
        return {"received": True, "result": payouts.handle_webhook(db.session, event)}


def _verifier() -> Any:
    """Signature checks need no API key: use the configured gateway, or a keyless one."""
    from royalties.payments.stripe import StripeGateway

    try:
        return stripe_gateway()
    except NotConfigured:
        return StripeGateway("sk_unused", current_app.config.get("STRIPE_API_BASE"))
