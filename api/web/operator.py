"""The operator's accounts and keys in the dashboard: create artists and storefronts
(their API key shown once, on the answer page only), invite artists by email, and list,
rotate and revoke API keys -- the services and validation of ``/v1/artists``,
``/v1/storefronts`` and ``/v1/keys``, audited the same way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import marshmallow as ma
from flask import current_app, flash, redirect, render_template, request, url_for

from api.extensions import db
from api.schemas.accounts import ArtistCreate, InvitationIn, StorefrontCreate
from api.web import signin
from api.web.mail import send_invitation
from api.web.views import bp
from royalties.errors import Conflict, Forbidden, ValidationFailed
from royalties.services import accounts, keys

_FORMS = {"artist": ArtistCreate(), "storefront": StorefrontCreate()}
ARTISTS_PER_PAGE = 50


def _admin() -> signin.Viewer:
    viewer = signin.viewer()
    if viewer.role != "admin":
        raise Forbidden("accounts and keys are the operator's")
    return viewer


def _invite_ttl() -> timedelta:
    return timedelta(hours=current_app.config["INVITE_LINK_HOURS"])


def _accounts_page(status: int = 200, **shown: Any) -> tuple[str, int]:
    """The accounts page: the forms (with ``shown``'s answer or errors) and the artists."""
    artists = accounts.artists(
        db.session, limit=ARTISTS_PER_PAGE, cursor=request.args.get("cursor")
    )
    context: dict[str, Any] = {
        "made": None,
        "errors": {},
        "values": {},
        "kind": None,
        "invite_errors": {},
        "invite_values": {},
        "artists": artists,
        "invite_hours": current_app.config["INVITE_LINK_HOURS"],
    }
    return render_template("web/accounts.html", **(context | shown)), status


def _field_errors(exc: ma.ValidationError | Conflict | ValidationFailed, field: str) -> Any:
    if isinstance(exc, ma.ValidationError):
        return dict(exc.messages)  # type: ignore[arg-type]
    return {k: list(v) for k, v in exc.fields.items()} or {field: [exc.detail]}


@bp.route("/admin/accounts", methods=["GET", "POST"])
@signin.signed_in
def admin_accounts() -> Any:
    viewer = _admin()
    if request.method == "GET":
        return _accounts_page()
    kind = request.form.get("kind", "")
    schema = _FORMS.get(kind)
    if schema is None:
        return _accounts_page()
    fields = ("name", "email") if kind == "artist" else ("name", "base_url")
    values = {name: request.form.get(name, "").strip() for name in fields}
    invite = kind == "artist" and request.form.get("invite") == "yes"
    try:
        body = schema.load({k: v for k, v in values.items() if v or k == "name"})
        if kind == "artist":
            made = accounts.create_artist(
                db.session,
                name=body["name"],
                email=body["email"],
                actor=viewer.actor,
                invite_for=_invite_ttl() if invite else None,
            )
        else:
            made = accounts.create_storefront(
                db.session, name=body["name"], base_url=body["base_url"], actor=viewer.actor
            )
    except (ma.ValidationError, ValidationFailed, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        errors = _field_errors(exc, "name")
        return _accounts_page(status, errors=errors, values=values, kind=kind, invite=invite)
    if made.invitation is not None:
        send_invitation(made.invitation)
    return _accounts_page(made=made, made_kind=kind)


@bp.post("/admin/artists/<artist_id>/invite")
@signin.signed_in
def admin_artist_invite(artist_id: str) -> Any:
    viewer = _admin()
    raw = request.form.get("email", "").strip()
    try:
        body = InvitationIn().load({"email": raw} if raw else {})
        invitation = accounts.invite_artist(
            db.session,
            artist_id=artist_id,
            email=body["email"],
            link_ttl=_invite_ttl(),
            actor=viewer.actor,
        )
    except (ma.ValidationError, ValidationFailed, Conflict) as exc:
        status = 409 if isinstance(exc, Conflict) else 422
        errors = {artist_id: _field_errors(exc, "email").get("email", [])}
        return _accounts_page(status, invite_errors=errors, invite_values={artist_id: raw})
    send_invitation(invitation)
    hours = current_app.config["INVITE_LINK_HOURS"]
    flash(
        f"Sent {invitation.name} an invitation at {invitation.email}: "
        f"its sign-in link works once, for {hours} hours.",
        "info",
    )
    return redirect(url_for("web.admin_accounts") + "#artists", code=303)


@bp.get("/admin/keys")
@signin.signed_in
def admin_keys() -> Any:
    _admin()
    page = keys.list_keys(db.session, owner_id=None, limit=100, cursor=request.args.get("cursor"))
    return render_template("web/keys.html", page=page, rotated=None)


@bp.post("/admin/keys/<key_id>/rotate")
@signin.signed_in
def admin_key_rotate(key_id: str) -> Any:
    viewer = _admin()
    rotated = keys.rotate_key(db.session, key_id=key_id, actor=viewer.actor)
    page = keys.list_keys(db.session, owner_id=None, limit=100, cursor=None)
    return render_template("web/keys.html", page=page, rotated=rotated)


@bp.post("/admin/keys/<key_id>/revoke")
@signin.signed_in
def admin_key_revoke(key_id: str) -> Any:
    viewer = _admin()
    if key_id == viewer.key_id:
        flash("That is the key you are signed in with: sign in with another first.", "error")
        return redirect(url_for("web.admin_keys"), code=303)
    keys.revoke_key(db.session, key_id=key_id, actor=viewer.actor)
    flash(f"Revoked {key_id}: it is refused from its next request on.", "info")
    return redirect(url_for("web.admin_keys"), code=303)
