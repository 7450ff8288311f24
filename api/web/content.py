"""An artist's content in the dashboard: add and edit items, set an item's own reward
plan, and disable share links of it -- with the API's validation and messages (the
same schemas and services), so a bad form is told what is wrong and writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from flask import current_app, flash, redirect, render_template, request, url_for

from api.extensions import db, forget_link
from api.schemas.catalog import ContentCreate
from api.web import forms, signin
from api.web.views import bp
from royalties import plans
from royalties.errors import PlanError, ValidationFailed
from royalties.models import CONTENT_KINDS
from royalties.models.graph import MAX_DEPTH
from royalties.services import catalog
from royalties.services.links import disable_share_link, links_to, share_url

_CONTENT = ContentCreate()
_FIELDS = ("title", "kind", "price", "currency", "storefront_url")
LIMITS = {"levels": MAX_DEPTH, "total": plans.MAX_TOTAL_BPS, "hold": plans.MAX_HOLD_DAYS}


def _acting_artist(artist_id: str) -> str | None:
    """The acting artist's id (None for an admin), once the viewer may manage it."""
    viewer = signin.check_may_view("artist", artist_id)
    return None if viewer.role == "admin" else viewer.owner_id


def _content_from_form(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The form as the API's body (price as an integer of minor units); and its errors."""
    values = {name: form.get(name, "").strip() for name in _FIELDS}
    body: dict[str, Any] = dict(values)
    if values["price"].isdigit():
        body["price"] = int(values["price"])
    try:
        return _CONTENT.load(body), {}
    except ma.ValidationError as exc:
        return values, dict(exc.messages)  # type: ignore[arg-type]


@bp.route("/artists/<artist_id>/content", methods=["GET", "POST"])
@signin.signed_in
def artist_content(artist_id: str) -> Any:
    _acting_artist(artist_id)
    artist = catalog.get_artist(db.session, artist_id)
    values: Mapping[str, Any] = {"kind": "track", "currency": "USD"}
    errors: dict[str, Any] = {}
    status = 200
    if request.method == "POST":
        body, errors = _content_from_form(request.form)
        if not errors:
            item = catalog.create_content(db.session, artist_id=artist_id, **body)
            flash(f"Added “{item.title}”.", "info")
            return redirect(url_for("web.content_item", content_id=item.id), code=303)
        values, status = body, 422
    join_url = current_app.config["PUBLIC_BASE_URL"].rstrip("/") + url_for(
        "public.join", artist_id=artist_id
    )
    page = render_template(
        "web/content_list.html",
        artist=artist,
        content=catalog.content_sales(db.session, artist_id),
        values=values,
        errors=errors,
        kinds=CONTENT_KINDS,
        join_url=join_url,
    )
    return page, status


@bp.route("/content/<content_id>", methods=["GET", "POST"])
@signin.signed_in
def content_item(content_id: str) -> Any:
    item = catalog.get_content(db.session, content_id)
    acting = _acting_artist(item.artist_id)
    errors: dict[str, Any] = {}
    values: Mapping[str, Any] = {name: getattr(item, name) for name in _FIELDS}
    if request.method == "POST":
        body, errors = _content_from_form(request.form)
        if not errors:
            try:
                catalog.update_content(
                    db.session, content_id=content_id, acting_artist_id=acting, **body
                )
            except ValidationFailed as exc:
                errors = dict(exc.fields) or {"form": [exc.detail]}
            else:
                flash("Saved.", "info")
                return redirect(url_for("web.content_item", content_id=content_id), code=303)
        values = body
    return _render_item(content_id, values=values, errors=errors), 422 if errors else 200


@bp.post("/content/<content_id>/plan")
@signin.signed_in
def content_plan(content_id: str) -> Any:
    item = catalog.get_content(db.session, content_id)
    acting = _acting_artist(item.artist_id)
    try:
        rates, hold = forms.plan_from_form(request.form)
        plan = catalog.set_content_plan(
            db.session,
            acting_artist_id=acting,
            content_id=content_id,
            level_rates_bps=rates,
            hold_days=hold,
        )
    except PlanError as error:
        return _render_item(content_id, plan_error=error, plan_form=request.form), 422
    flash(f"Saved this item's plan, version {plan.version}.", "info")
    return redirect(url_for("web.content_item", content_id=content_id) + "#plan", code=303)


@bp.post("/content/<content_id>/links/<code>/disable")
@signin.signed_in
def content_link_disable(content_id: str, code: str) -> Any:
    item = catalog.get_content(db.session, content_id)
    viewer = signin.check_may_view("artist", item.artist_id)
    link = disable_share_link(
        db.session, code=code, acting_role=viewer.role, acting_owner_id=viewer.owner_id
    )
    if link.content_id != content_id:
        raise ValidationFailed("That link is not a link of this item.")
    forget_link(code)
    flash(f"Disabled the link {code}: it attributes nothing from now on.", "info")
    return redirect(url_for("web.content_item", content_id=content_id) + "#links", code=303)


def _render_item(
    content_id: str,
    *,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, Any] | None = None,
    plan_error: PlanError | None = None,
    plan_form: Mapping[str, str] | None = None,
) -> str:
    item = catalog.get_content(db.session, content_id)
    plan = catalog.plan_for(db.session, artist_id=item.artist_id, content_id=content_id)
    plan_values = forms.plan_values(plan, plan_form)
    base = current_app.config["PUBLIC_BASE_URL"]
    return render_template(
        "web/content_item.html",
        item=item,
        values=values or {name: getattr(item, name) for name in _FIELDS},
        errors=errors or {},
        kinds=CONTENT_KINDS,
        plan=plan,
        own_plan=plan.content_id == content_id,
        plan_words=plans.in_words(plan.level_rates_bps, plan.hold_days),
        plan_action=url_for("web.content_plan", content_id=content_id),
        values_plan=plan_values,
        err=plan_error,
        invalid=forms.invalid_fields(plan_error, plan_values),
        limits=LIMITS,
        links=[
            (link, handle, share_url(base, link.code))
            for link, handle in links_to(db.session, content_id)
        ],
    )
