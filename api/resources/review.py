"""The review queue: rewards held by fraud signals, the admin's decisions, and the
signals themselves (listed, and cleared on a fan or a link)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import actor, current_principal, require
from api.extensions import db
from api.schemas.common import PageQuery
from api.schemas.review import (
    ClearIn,
    DecisionIn,
    DecisionOut,
    ReviewPage,
    SignalOut,
    SignalPage,
    SignalQuery,
)
from royalties.fraud import review, signals

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
            actor=actor(),
        )


# Not /review/signals: POST /review/<reward_id> would answer that path too (and OPTIONS
# would advertise a POST that decides a reward named "signals").
@blp.route("/fraud-signals")
class Signals(MethodView):
    @require("admin")
    @blp.arguments(SignalQuery(), location="query")
    @blp.response(200, SignalPage)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Fraud signals, newest first, active and cleared, with who cleared them (admin)"""
        items, cursor = signals.list_signals(
            db.session,
            subject_type=query["subject_type"],
            subject_id=query["subject_id"],
            state=query["state"],
            limit=query["limit"],
            cursor=query["cursor"],
        )
        return {"items": items, "next_cursor": cursor}


@blp.route("/review/signals/<signal_id>/clear")
class SignalClear(MethodView):
    @require("admin")
    @blp.arguments(ClearIn())
    @blp.response(200, SignalOut)
    def post(self, body: dict[str, Any], signal_id: str) -> dict[str, Any]:
        """Clear a signal on a fan or a link (admin): it holds no new rewards; audited"""
        return signals.clear(
            db.session,
            signal_id=signals.parse_id(signal_id),
            reason=body["reason"],
            cleared_by=current_principal().key_id,
            actor=actor(),
        )
