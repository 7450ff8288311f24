"""The operator's accounts and keys in the dashboard: create artists and storefronts
(their API key shown once, on the answer page only), and list, rotate and revoke API
keys -- the services and validation of ``/v1/artists``, ``/v1/storefronts`` and
``/v1/keys``."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import flash, redirect, render_template, request, url_for

from api.extensions import db
from api.schemas.accounts import ArtistCreate, StorefrontCreate
from api.web import signin
from api.web.views import bp
from royalties.errors import Conflict, Forbidden
from royalties.services import accounts, keys

_FORMS = {"artist": ArtistCreate(), "storefront": StorefrontCreate()}


def _admin() -> None:
    if signin.viewer().role != "admin":
        raise Forbidden("accounts and keys are the operator's")


@bp.route("/admin/accounts", methods=["GET", "POST"])
@signin.signed_in
def admin_accounts() -> Any:
    _admin()
    if request.method == "GET":
        return render_template("web/accounts.html", made=None, errors={}, values={}, kind=None)
    kind = request.form.get("kind", "")
    schema = _FORMS.get(kind)
    if schema is None:
        return render_template("web/accounts.html", made=None, errors={}, values={}, kind=None)
    fields = ("name", "email") if kind == "artist" else ("name", "base_url")
    values = {name: request.form.get(name, "").strip() for name in fields}
    try:
        body = schema.load({k: v for k, v in values.items() if v or k == "name"})
        if kind == "artist":
            made = accounts.create_artist(db.session, name=body["name"], email=body["email"])
        else:
            made = accounts.create_storefront(
                db.session, name=body["name"], base_url=body["base_url"]
            )
    except ma.ValidationError as exc:
        errors = dict(exc.messages)
        return render_template(
            "web/accounts.html", made=None, errors=errors, values=values, kind=kind
        ), 422
    except Conflict as exc:
        errors = {k: list(v) for k, v in exc.fields.items()} or {"name": [exc.detail]}
        return render_template(
            "web/accounts.html", made=None, errors=errors, values=values, kind=kind
        ), 409
    return render_template(
        "web/accounts.html", made=made, made_kind=kind, errors={}, values={}, kind=None
    )


@bp.get("/admin/keys")
@signin.signed_in
def admin_keys() -> Any:
    _admin()
    page = keys.list_keys(db.session, owner_id=None, limit=100, cursor=request.args.get("cursor"))
    return render_template("web/keys.html", page=page, rotated=None)


@bp.post("/admin/keys/<key_id>/rotate")
@signin.signed_in
def admin_key_rotate(key_id: str) -> Any:
    _admin()
    rotated = keys.rotate_key(db.session, key_id=key_id)
    page = keys.list_keys(db.session, owner_id=None, limit=100, cursor=None)
    return render_template("web/keys.html", page=page, rotated=rotated)


@bp.post("/admin/keys/<key_id>/revoke")
@signin.signed_in
def admin_key_revoke(key_id: str) -> Any:
    _admin()
    if key_id == signin.viewer().key_id:
        flash("That is the key you are signed in with: sign in with another first.", "error")
        return redirect(url_for("web.admin_keys"), code=303)
    keys.revoke_key(db.session, key_id=key_id)
    flash(f"Revoked {key_id}: it is refused from its next request on.", "info")
    return redirect(url_for("web.admin_keys"), code=303)
