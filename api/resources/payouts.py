"""Stripe Connect onboarding, payout runs, payouts and Stripe webhooks."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import actor, current_principal, own, require
from api.config import minimums
from api.extensions import db, stripe_gateway
from api.schemas.payouts import (
    PayoutAccountIn,
    PayoutAccountOut,
    PayoutDetail,
    PayoutPage,
    PayoutQuery,
    PayoutRunOut,
    StripeEvent,
    WebhookAck,
    unreadable_parts,
)
from royalties import payouts
from royalties.errors import NotConfigured, WebhookError, WebhookEventInvalid
from royalties.models import Payout

blp = Blueprint("payouts", __name__, url_prefix="/v1", description="Payouts through Stripe Connect")


@blp.route("/fans/<fan_id>/payout-account")
class PayoutAccount(MethodView):
    @require("fan")
    @blp.arguments(PayoutAccountIn(), required=False)
    @blp.response(200, PayoutAccountOut)
    def post(self, body: dict[str, Any] | None, fan_id: str) -> Any:
        """Create (once) the fan's Stripe Express account and a fresh onboarding link

        The link's `refresh_url` and `return_url` are pages of this engine that the fan's
        browser reaches without an API key (a signed token of their own, valid 24 hours).
        `country` (ISO 3166 alpha-2, default `PLATFORM_COUNTRY`) applies when the account
        is created; an account in another country than the platform's is created under
        Stripe's recipient service agreement."""
        from api.web.onboarding import onboarding_urls

        own(fan_id, what="fan")
        refresh, back = onboarding_urls(fan_id)
        return payouts.connect_account(
            db.session,
            stripe_gateway(),
            fan_id=fan_id,
            refresh_url=refresh,
            return_url=back,
            country=(body or {}).get("country"),
            platform_country=current_app.config["PLATFORM_COUNTRY"],
        )


@blp.route("/payout-runs")
class PayoutRuns(MethodView):
    @require("admin")
    @blp.response(201, PayoutRunOut)
    def post(self) -> dict[str, Any]:
        """Run payouts now (admin): every payable fan at or above the minimum, one transfer each

        Reads the platform balance first and pays, per currency, only what it covers;
        `not_paid` counts who was not paid and why, `platform_balance_short` what was
        left for lack of platform balance. Sends up to `PAYOUT_CONCURRENCY` at once."""
        config = current_app.config
        report = payouts.run_payouts(
            db.session,
            stripe_gateway(),
            min_payout=minimums(config),
            concurrency=config["PAYOUT_CONCURRENCY"],
            actor=actor(),
        )
        ids = [o.payout_id for o in report.outcomes]
        rows = {p.id: p for p in db.session.query(Payout).filter(Payout.id.in_(ids))} if ids else {}
        return {
            "id": report.run_id,
            "complete": report.complete,
            "payouts": [payouts.payout_view(rows[i]) for i in ids if i in rows],
            "not_paid": payouts.not_paid_view(report),
            "platform_balance_short": [
                {"currency": c, "amount": a} for c, a in sorted(report.short.items())
            ],
        }


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
        return {
            "received": True,
            "result": payouts.handle_webhook(db.session, event, stripe_gateway),
        }


def _verifier() -> Any:
    """Signature checks need no API key: use the configured gateway, or a keyless one."""
    from royalties.payments.stripe import StripeGateway

    try:
        return stripe_gateway()
    except NotConfigured:
        return StripeGateway("sk_unused", current_app.config.get("STRIPE_API_BASE"))
