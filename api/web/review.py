"""The operator's review queue in the dashboard: held rewards with the signals that hold
them; approve or reject one or many with a reason; clear a signal on a fan or a link.
The same services as ``/v1/review`` (audited the same way, by the admin's key id, and
in the operator's audit log)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from api.extensions import db
from api.web import signin
from api.web.views import bp
from royalties.errors import Conflict, Forbidden, NotFound, ValidationFailed
from royalties.fraud import review, signals

MAX_AT_ONCE = 100
MAX_REASON = 500


def _admin() -> signin.Viewer:
    viewer = signin.viewer()
    if viewer.role != "admin":
        raise Forbidden("the review queue is the operator's")
    return viewer


def _reason() -> str:
    reason = request.form.get("reason", "").strip()
    if not reason:
        raise ValidationFailed("Say why: the reason is kept with the decision.")
    if len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise ValidationFailed(f"The reason is at most {MAX_REASON} printable characters.")
    return reason


@bp.get("/review")
@signin.signed_in
def review_queue() -> Any:
    _admin()
    items, cursor = review.queue(db.session, limit=50, cursor=request.args.get("cursor"))
    return render_template("web/review.html", items=items, next_cursor=cursor)


@bp.post("/review/decide")
@signin.signed_in
def review_decide() -> Any:
    viewer = _admin()
    decision = request.form.get("decision", "")
    if decision not in ("approve", "reject"):
        raise ValidationFailed("Choose approve or reject.")
    reward_ids = [r for r in request.form.getlist("reward_id") if r.strip()]
    if not reward_ids:
        raise ValidationFailed("Tick at least one reward to decide.")
    if len(reward_ids) > MAX_AT_ONCE:
        raise ValidationFailed(f"Decide at most {MAX_AT_ONCE} rewards at once.")
    reason = _reason()
    done, refused = 0, []
    for reward_id in reward_ids:
        try:
            review.decide(
                db.session,
                reward_id=reward_id,
                decision=decision,
                reason=reason,
                decided_by=viewer.who,
                actor=viewer.actor,
            )
            done += 1
        except (Conflict, NotFound) as exc:  # decided meanwhile, or a stale page
            refused.append(exc.detail)
    verb = "Approved" if decision == "approve" else "Rejected"
    flash(f"{verb} {done} reward{'s' if done != 1 else ''}.", "info")
    for detail in refused:
        flash(detail, "error")
    return redirect(url_for("web.review_queue"), code=303)


@bp.post("/review/signals/<signal_id>/clear")
@signin.signed_in
def review_clear_signal(signal_id: str) -> Any:
    viewer = _admin()
    reason = _reason()
    cleared = signals.clear(
        db.session,
        signal_id=signals.parse_id(signal_id),
        reason=reason,
        cleared_by=viewer.who,
        actor=viewer.actor,
    )
    flash(
        f"Cleared the {cleared['kind']} signal on {cleared['subject_type']} "
        f"{cleared['subject_id']}: its new rewards are no longer held.",
        "info",
    )
    return redirect(url_for("web.review_queue"), code=303)
