"""A fan's balances and rewards."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import own, require
from api.extensions import db
from api.schemas.common import PageQuery
from api.schemas.money import BalanceOut, RewardPage
from royalties.services import balances

blp = Blueprint("money", __name__, url_prefix="/v1", description="Balances and rewards")


@blp.route("/fans/<fan_id>/balance")
class Balance(MethodView):
    @require("fan", "admin")
    @blp.response(200, BalanceOut)
    def get(self, fan_id: str) -> dict[str, Any]:
        """Pending, available and paid per currency (that fan, admin)"""
        own(fan_id, what="fan")
        lines = balances.fan_balances(db.session, fan_id)
        return {"fan_id": fan_id, "balances": [line.__dict__ for line in lines]}


@blp.route("/fans/<fan_id>/rewards")
class Rewards(MethodView):
    @require("fan", "admin")
    @blp.arguments(PageQuery(), location="query")
    @blp.response(200, RewardPage)
    def get(self, query: dict[str, Any], fan_id: str) -> dict[str, Any]:
        """Every reward the fan earned, newest first, with its state (that fan, admin)"""
        own(fan_id, what="fan")
        page = balances.fan_rewards(
            db.session, fan_id, limit=query["limit"], cursor=query["cursor"]
        )
        return {"items": page.items, "next_cursor": page.next_cursor}
