"""Purchases and refunds, reported by storefronts under Idempotency-Keys."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal, require
from api.context import client_address_hash
from api.extensions import db
from api.metrics import record_sale
from api.run_once import run_once
from api.schemas.sales import IdempotencyHeader, PurchaseIn, PurchaseOut, RefundIn, RefundOut
from royalties.errors import NotFound
from royalties.ids import looks_like_id
from royalties.services import purchases, refunds
from royalties.services.purchases import BuyerRef

blp = Blueprint("sales", __name__, url_prefix="/v1", description="Purchases and refunds")

_IDEMPOTENCY_DOC = {
    "responses": {
        400: {"description": "Idempotency-Key header missing or malformed"},
        409: {"description": "a request with this Idempotency-Key is still in flight"},
        422: {"description": "invalid body, or this Idempotency-Key was used with another body"},
        201: {
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answer replays an earlier request's",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        },
    },
}


@blp.route("/purchases")
class Purchases(MethodView):
    @require("storefront")
    @blp.arguments(IdempotencyHeader(), location="headers", as_kwargs=True)
    @blp.arguments(PurchaseIn())
    @blp.response(201, PurchaseOut)
    @blp.doc(**_IDEMPOTENCY_DOC)
    def post(self, body: dict[str, Any], **_headers: Any) -> Any:
        """Record a sale (storefront): attribute it five levels deep and book every cent

        `share_code` names the link the buyer came through: the link's fan is level 1,
        that fan's sponsor level 2, and so on as deep as the artist's plan goes. The
        answer lists each reward in `rewards`; `amount` is split, to the cent, into

        - the rewards, at the rates of the plan in force (`plan_version`),
        - the platform fee (`fee`),
        - and the rest for the artist (`artist_share`).

        Rewards stay pending for the plan's hold days, so a refund can take them back.
        Retry with the same `Idempotency-Key` and body to get the first answer again.
        """
        storefront_id = current_principal().owner_id
        assert storefront_id is not None
        answer = run_once(
            lambda claim: purchases.record_purchase(
                db.session,
                storefront_id=storefront_id,
                content_id=body["content_id"],
                amount=body["amount"],
                currency=body["currency"],
                buyer=BuyerRef(**body["buyer"]),
                share_code=body["share_code"],
                fee_bps=current_app.config["PLATFORM_FEE_BPS"],
                client_ip_hash=client_address_hash(
                    str(body["client_ip"]) if body["client_ip"] else None
                ),
                claim=claim,
            )
        )
        return record_sale("purchases", answer)


@blp.route("/purchases/<purchase_id>")
class PurchaseItem(MethodView):
    @require("storefront", "admin")
    @blp.response(200, PurchaseOut)
    def get(self, purchase_id: str) -> Any:
        """A recorded purchase with its rewards (the storefront that recorded it, admin)"""
        principal = current_principal()
        only = principal.owner_id if principal.role == "storefront" else None
        return purchases.get_purchase(db.session, purchase_id, storefront_id=only)


@blp.route("/purchases/<purchase_id>/refunds")
class Refunds(MethodView):
    @require("storefront")
    @blp.arguments(IdempotencyHeader(), location="headers", as_kwargs=True)
    @blp.arguments(RefundIn())
    @blp.response(201, RefundOut)
    @blp.doc(**_IDEMPOTENCY_DOC)
    def post(self, body: dict[str, Any], purchase_id: str, **_headers: Any) -> Any:
        """Refund part or all of a purchase (the storefront that recorded it)

        `amount` (minor units) is taken back from the artist, the platform and each
        rewarded fan in proportion; several partial refunds may add up to the price.
        Retry with the same `Idempotency-Key` and body to get the first answer again.
        """
        storefront_id = current_principal().owner_id
        assert storefront_id is not None
        if not looks_like_id(purchase_id):
            # Before the key is claimed: the claim stores the path, which must fit.
            raise NotFound(f"purchase {purchase_id[:64]} does not exist")
        answer = run_once(
            lambda claim: refunds.refund_purchase(
                db.session,
                storefront_id=storefront_id,
                purchase_id=purchase_id,
                amount=body["amount"],
                claim=claim,
            )
        )
        return record_sale("refunds", answer)
