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
from royalties import idempotency
from royalties.errors import NotFound
from royalties.idempotency import Claim
from royalties.ids import looks_like_id
from royalties.services import purchase_batch, purchases, refunds
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
    claimed key."""
    sale = _sale_request(body)
    return lambda claim: purchases.record_purchase(
        db.session,
        storefront_id=storefront_id,
        content_id=sale.content_id,
        amount=sale.amount,
        currency=sale.currency,
        buyer=sale.buyer,
        share_code=sale.share_code,
        fee_bps=current_app.config["PLATFORM_FEE_BPS"],
        client_ip_hash=sale.client_ip_hash,
        claim=claim,
    )


def _sale_request(body: dict[str, Any]) -> purchases.SaleRequest:
    """A purchase's body (as ``PurchaseIn`` loads it) as the services take it: how both
    purchase endpoints read a sale."""
    return purchases.SaleRequest(
        content_id=body["content_id"],
        amount=body["amount"],
        currency=body["currency"],
        buyer=BuyerRef(**body["buyer"]),
        share_code=body["share_code"],
        client_ip_hash=client_address_hash(str(body["client_ip"]) if body["client_ip"] else None),
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
        as that request would record it, in the order given (items that cannot affect
        each other are written together, a few statements for all of them). The answer
        is always `200` with one entry of `results` per item, in the same order:

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
        results: list[dict[str, Any] | None] = []
        sales: list[purchase_batch.BatchSale] = []
        for raw in items:
            try:
                sales.append(_batch_sale(raw))
                results.append(None)  # answered by record_batch, in order
            except Exception as error:  # a malformed item's own answer; the next goes on
                problem = problem_of(error)
                results.append({"status": problem["status"], "problem": problem})
        outcomes = iter(
            purchase_batch.record_batch(
                db.session,
                sales,
                storefront_id=storefront_id,
                client_id=current_principal().client_id,
                scope=SINGLE_PURCHASE,
                fee_bps=current_app.config["PLATFORM_FEE_BPS"],
            )
        )
        return {
            "results": [
                _batch_result(next(outcomes)) if result is None else result for result in results
            ]
        }


def _batch_sale(raw: dict[str, Any]) -> purchase_batch.BatchSale:
    """One item of a batch as ``record_batch`` takes it: loaded as ``POST /v1/purchases``
    loads its body, its key apart, and fingerprinted as that request would be."""
    item = _BATCH_ITEM.load(raw)
    unkeyed = {name: value for name, value in raw.items() if name != "idempotency_key"}
    return purchase_batch.BatchSale(
        _sale_request(item),
        item["idempotency_key"],
        idempotency.fingerprint(SINGLE_PURCHASE, unkeyed),
    )


def _batch_result(outcome: purchase_batch.Outcome) -> dict[str, Any]:
    """One item's answer: the receipt, or the problem ``POST /v1/purchases`` would send."""
    if outcome.error is not None:
        problem = problem_of(outcome.error)
        return {"status": problem["status"], "problem": problem}
    assert outcome.body is not None
    headers = {REPLAYED: "true"} if outcome.replayed else {}
    record_sale("purchases", (outcome.body, CREATED, headers))
    return {"status": CREATED, "purchase": outcome.body, "replayed": outcome.replayed}


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
