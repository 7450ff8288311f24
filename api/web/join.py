"""The public join page of an artist: who they are, what they publish, and their reward
plan in plain words; joining makes the visitor a fan (with the sponsor a ``?ref=`` share
code names, SPEC 2) and signs them in to their fan page.

A blueprint of its own at the site's root (``/join/<artist_id>``), outside the
dashboard's ``/dashboard`` prefix but with the dashboard's session, CSRF check and
error pages. Rate limited per address with the API's sign-ups (``RATELIMIT_SIGNUP``).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Blueprint, redirect, render_template, request, url_for

from api.context import client_address_hash, fraud_config
from api.extensions import db
from api.schemas.fans import FanCreate
from api.web import signin
from royalties import plans
from royalties.errors import Conflict, RoyaltiesError, ValidationFailed
from royalties.keys import authenticate
from royalties.services import catalog, fans

public = Blueprint("public", __name__)
_FORM = FanCreate()


@public.before_request
def _before() -> None:
    signin.load_viewer()
    signin.check_csrf()


@public.context_processor
def _helpers() -> dict[str, Any]:
    from api.web.views import _helpers as dashboard_helpers

    return dashboard_helpers()


@public.route("/join/<artist_id>", methods=["GET", "POST"])
def join(artist_id: str) -> Any:
    artist = catalog.get_artist(db.session, artist_id)
    plan = catalog.plan_for(db.session, artist_id=artist_id, content_id=None)
    page = {
        "artist": artist,
        "content": catalog.catalogue(db.session, [artist_id]),
        "plan": plans.in_words(plan.level_rates_bps, plan.hold_days),
        "ref": request.values.get("ref", ""),
    }
    if request.method == "GET":
        return render_template("web/join.html", **page, values={}, errors={})
    values = {name: request.form.get(name, "").strip() for name in ("handle", "email")}
    try:
        body = _FORM.load(
            {
                "handle": values["handle"],
                "email": values["email"] or None,
                "ref": page["ref"] or None,
            }
        )
        if not body["email"]:
            raise ma.ValidationError({"email": ["give the address you sign in with"]})
        signed_up = fans.sign_up(
            db.session,
            handle=body["handle"],
            email=body["email"],
            ref=body["ref"],
            signup_ip_hash=client_address_hash(request.remote_addr),
            fraud_config=fraud_config(),
        )
    except ma.ValidationError as exc:
        errors = {k: v for k, v in dict(exc.messages).items() if k in ("handle", "email", "ref")}
        return render_template("web/join.html", **page, values=values, errors=errors), 422
    except (Conflict, ValidationFailed) as exc:
        errors = {k: list(v) for k, v in exc.fields.items()} or {"form": [exc.detail]}
        status = 409 if isinstance(exc, Conflict) else 422
        return render_template("web/join.html", **page, values=values, errors=errors), status
    principal = authenticate(db.session, signed_up.api_key)
    assert principal is not None, "a key issued just now authenticates"
    signin.sign_in(principal)
    return redirect(url_for("web.fan", fan_id=signed_up.fan.id, artist=artist_id))


@public.errorhandler(RoyaltiesError)
def _domain_error(error: RoyaltiesError) -> Any:
    from api.web.views import _domain_error as page

    return page(error)
