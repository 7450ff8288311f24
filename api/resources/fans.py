"""Fan sign-up and profiles."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import own, require
from api.context import client_address_hash, fraud_config
from api.extensions import db
from api.schemas.fans import FanCreate, FanCreated, FanProfile, FanUpdate
from royalties.services import fans

blp = Blueprint("fans", __name__, url_prefix="/v1", description="Fans and the referral graph")


@blp.route("/fans")
class Fans(MethodView):
    @blp.arguments(FanCreate())
    @blp.response(201, FanCreated)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sign up as a fan (anyone); `ref` names the sponsor by share code"""
        result = fans.sign_up(
            db.session,
            handle=body["handle"],
            email=body["email"],
            ref=body["ref"],
            signup_ip_hash=client_address_hash(request.remote_addr),
            fraud_config=fraud_config(),
        )
        return {
            "id": result.fan.id,
            "handle": result.fan.handle,
            "sponsor_id": result.fan.sponsor_id,
            "api_key": result.api_key,
        }


@blp.route("/fans/<fan_id>")
class FanItem(MethodView):
    @require("fan", "admin")
    @blp.response(200, FanProfile)
    def get(self, fan_id: str) -> dict[str, Any]:
        """A fan's profile with downline counts per level (that fan, admin)"""
        own(fan_id, what="fan")
        return _shown(fans.profile(db.session, fan_id))

    @require("fan", "admin")
    @blp.arguments(FanUpdate())
    @blp.response(200, FanProfile)
    def patch(self, body: dict[str, Any], fan_id: str) -> dict[str, Any]:
        """Switch the fan's email notifications on or off (that fan, admin)"""
        own(fan_id, what="fan")
        return _shown(fans.set_notifications(db.session, fan_id, on=body["notifications"]))


def _shown(profile: fans.Profile) -> dict[str, Any]:
    fan = profile.fan
    return {
        "id": fan.id,
        "handle": fan.handle,
        "email": fan.email,
        "sponsor_id": fan.sponsor_id,
        "created_at": fan.created_at,
        "notifications": fan.notify_email,
        "downline": [{"level": lvl, "count": n} for lvl, n in sorted(profile.downline.items())],
    }
