"""Purchases and refunds, reported by storefronts under Idempotency-Keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import current_app
from flask.blueprints import BlueprintSetupState
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.routing import Map, UnicodeConverter

from api.auth import current_principal, require
from api.context import client_address_hash
from api.errors import problem_of
from api.extensions import db
from api.limits import spend_units
from api.metrics import record_sale
from api.run_once import CREATED, REPLAYED, run_once
from api.schemas.sales import (
    IdempotencyHeader,
    PurchaseBatchIn,
    PurchaseBatchItemIn,
    PurchaseBatchOut,
    PurchaseIn,
    PurchaseOut,
    RefundIn,
    RefundOut,
)
from royalties.errors import NotFound
from royalties.idempotency import Claim
from royalties.ids import looks_like_id
from royalties.services import purchases, refunds
from royalties.services.purchases import BuyerRef

blp = Blueprint("sales", __name__, url_prefix="/v1", description="Purchases and refunds")


class _PurchaseId(UnicodeConverter):
    """A purchase id in a path: any segment but ``batch``, the batch endpoint's, so that
    ``/v1/purchases/batch`` serves only POST (and its ``Allow`` says so)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, *args, **kwargs)
        self.regex = "(?!batch$)" + self.regex


@blp.record_once
def _converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters["purchase"] = _PurchaseId  # before the routes below


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
        return record_sale("purchases", run_once(_recording(storefront_id, body)))


def _recording(storefront_id: str, body: dict[str, Any]) -> Callable[[Claim], dict[str, Any]]:
    """The work of recording one purchase (``body`` as ``PurchaseIn`` loads it) under a
    claimed key: how both purchase endpoints record a sale."""
    return lambda claim: purchases.record_purchase(
        db.session,
        storefront_id=storefront_id,
        content_id=body["content_id"],
        amount=body["amount"],
        currency=body["currency"],
        buyer=BuyerRef(**body["buyer"]),
        share_code=body["share_code"],
        fee_bps=current_app.config["PLATFORM_FEE_BPS"],
        client_ip_hash=client_address_hash(str(body["client_ip"]) if body["client_ip"] else None),
        claim=claim,
    )


# A batch item's key is claimed as if its purchase came alone: one namespace of keys
# for both endpoints, so a sale retried through either replays.
SINGLE_PURCHASE = "POST /v1/purchases"
_BATCH_ITEM = PurchaseBatchItemIn()


@blp.route("/purchases/batch")
class PurchaseBatch(MethodView):
    @require("storefront")
    @blp.arguments(PurchaseBatchIn())
    @blp.response(200, PurchaseBatchOut)
    def post(self, body: dict[str, Any]) -> Any:
        """Record up to 500 sales in one request (storefront), each as `POST /v1/purchases` would

        Each item of `purchases` is the body of `POST /v1/purchases` with its own
        `idempotency_key` (the rules of the `Idempotency-Key` header) and is recorded
        alone, in its own transaction, in the order given. The answer is always `200`
        with one entry of `results` per item, in the same order:

        - `status` 201 and the receipt in `purchase`, with `replayed` true when the
          key already had this answer (a retried batch replays every item),
        - or the status `POST /v1/purchases` would have answered and its problem
          document in `problem`: a malformed item, unknown content, another currency,
          a key used before with another body (422).

        One item's failure never undoes another's. A key given twice in one batch is
        one purchase: the second item replays the first, or is 422 if its body differs.
        Keys are shared with `POST /v1/purchases`. Only a body that is not 1 to 500
        objects in `purchases` is refused as a whole (422). The batch spends one unit
        of `RATELIMIT_SALES` per item, and is refused whole (429) when the budget cannot
        cover them all.
        """
        items = body["purchases"]
        refused = spend_units(len(items) - 1)  # the first unit was spent before the view
        if refused is not None:
            return refused
        storefront_id = current_principal().owner_id
        assert storefront_id is not None
        return {"results": [_batch_item(storefront_id, item) for item in items]}


def _batch_item(storefront_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    """One item of a batch, recorded and answered as ``POST /v1/purchases`` would."""
    try:
        item = _BATCH_ITEM.load(raw)
        unkeyed = {name: value for name, value in raw.items() if name != "idempotency_key"}
        receipt, _, headers = record_sale(
            "purchases",
            run_once(
                _recording(storefront_id, item),
                key=item["idempotency_key"],
                body=unkeyed,
                scope=SINGLE_PURCHASE,
            ),
        )
    except Exception as error:  # the item's own answer; the next item goes on
        db.session.rollback()
        problem = problem_of(error)
        return {"status": problem["status"], "problem": problem}
    return {"status": CREATED, "purchase": receipt, "replayed": REPLAYED in headers}


@blp.route("/purchases/<purchase:purchase_id>")
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
