"""The review queue: rewards held by fraud signals, and the admin's decisions."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_principal, require
from api.extensions import db
from api.schemas.common import PageQuery
from api.schemas.review import DecisionIn, DecisionOut, ReviewPage
from royalties.fraud import review

blp = Blueprint("review", __name__, url_prefix="/v1", description="Fraud review queue")


@blp.route("/review")
class ReviewQueue(MethodView):
    @require("admin")
    @blp.arguments(PageQuery(), location="query")
    @blp.response(200, ReviewPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Rewards held for review, with the signals that hold them (admin)"""
        items, cursor = review.queue(db.session, limit=query["limit"], cursor=query["cursor"])
        return {"items": items, "next_cursor": cursor}


@blp.route("/review/<reward_id>")
class ReviewDecision(MethodView):
    @require("admin")
    @blp.arguments(DecisionIn())
    @blp.response(200, DecisionOut)
    def post(self, body: dict[str, Any], reward_id: str) -> dict[str, Any]:
        """Approve or reject a held reward (admin); recorded with who, when and why"""
        return review.decide(
            db.session,
            reward_id=reward_id,
            decision=body["decision"],
            reason=body["reason"],
            decided_by=current_principal().key_id,
        )
