"""The dashboard's routes: sign-in (an API key or an emailed link), the artist page, the
fan page, the CSV statement.

A blueprint of plain Flask views registered on the app directly (not through the
flask-smorest Api), so none of it appears in ``/openapi.json``. Views parse the form,
call one service, and render; services own the transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from api import limits
from api.config import minimums
from api.errors import status_for
from api.extensions import db, outbox
from api.web import charts, formatting, forms, signin
from api.web.earnings_charts import earnings_chart
from api.web.mail import sign_in_mail
from api.web.pages import artist_page, fan_page
from royalties import plans
from royalties import sign_in as sign_in_rules
from royalties.errors import PlanError, RoyaltiesError, ValidationFailed
from royalties.ids import looks_like_id
from royalties.keys import authenticate
from royalties.models import Artist, Fan
from royalties.models.graph import MAX_DEPTH
from royalties.services.catalog import get_artist, set_artist_plan
from royalties.services.fans import get_fan, set_notifications
from royalties.services.sign_in import link_is_usable, request_link, use_link
from royalties.webhooks.endpoints import Owner, disabled_endpoints

log = logging.getLogger("royalties.web")

bp = Blueprint("web", __name__, url_prefix="/dashboard")

# Why the next payout run would not pay the fan, in the fan's words.
FAN_REASONS = {
    "negative_balance": "a refund after your last payout left a debt; new rewards pay it off first",
    "held_for_review": "some of your rewards are held for review",
    "under_minimum": "your available balance is under the minimum of {minimum}",
    "no_account": "set up payouts (below) to be paid",
    "payouts_off": "Stripe has not turned payouts on for your account yet",
    "capability_inactive": "Stripe has not turned transfers on for your account yet",
}

# The fan page's email notifications form: its two answers.
NOTIFICATION_CHOICES = {"on": True, "off": False}

RANKINGS = {
    "attributed_revenue": "Attributed revenue",
    "revenue_any_level": "Revenue at any level",
    "rewards": "Rewards earned",
    "pagerank": "Influence share",
    "betweenness": "Broker score",
    "downline": "Downline size",
}


@bp.before_request
def _before() -> None:
    signin.load_viewer()
    signin.check_csrf()


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "viewer": g.get("viewer"),
        "csrf_token": signin.csrf_token,
        "money": formatting.money,
        "bps": formatting.bps,
        "share": formatting.share,
        "when": formatting.when,
        "swatch": charts.swatch,
        "colour_swatch": charts.colour_swatch,
    }


@bp.after_request
def _no_store(response: BaseResponse) -> BaseResponse:
    # Pages show balances and keys' owners: never cache them in shared or back caches.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# -- sign-in ------------------------------------------------------------------------------


@bp.get("/")
@signin.signed_in
def home() -> Any:
    current = signin.viewer()
    if current.role != "admin":
        return redirect(signin.landing(current))
    newest = [
        list(db.session.scalars(select(model).order_by(model.created_at.desc()).limit(50)))
        for model in (Artist, Fan)
    ]
    return render_template(
        "web/admin.html",
        artists=newest[0],
        fans=newest[1],
        disabled_webhooks=disabled_endpoints(db.session, Owner("admin", None)),
    )


@bp.get("/open")
@signin.signed_in
def open_page() -> Any:
    """The admin's "open by id" form."""
    artist_id = request.args.get("artist_id", "").strip()
    fan_id = request.args.get("fan_id", "").strip()
    if artist_id:
        return redirect(url_for("web.artist", artist_id=artist_id))
    if fan_id:
        return redirect(url_for("web.fan", fan_id=fan_id))
    return redirect(url_for("web.home"))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = signin.safe_next(request.values.get("next"))
    if request.method == "GET":
        if g.viewer is not None:
            return redirect(target or signin.landing(g.viewer))
        return render_template("web/login.html", next=target)
    principal = authenticate(db.session, request.form.get("api_key", "").strip())
    if principal is None:
        error = "That API key is unknown or has been revoked."
        return render_template("web/login.html", next=target, error=error), 401
    if principal.role not in signin.DASHBOARD_ROLES:
        error = "Storefront keys have no dashboard; sign in with an artist, fan or admin key."
        return render_template("web/login.html", next=target, error=error), 403
    signin.sign_in(principal)
    current = signin.Viewer(principal.key_id, principal.role, principal.owner_id)
    return redirect(target or signin.landing(current))


# -- sign-in by email ---------------------------------------------------------------------

LINK_SENT = (
    "If an account uses that address, a sign-in link is on its way. It works once, for 15 minutes."
)


@bp.post("/login/email")
def login_email() -> Any:
    """Mail sign-in links to the address typed; the same answer whether an account uses
    it or not (no account enumeration), and nothing written for bad input."""
    target = signin.safe_next(request.values.get("next"))
    raw = request.form.get("email", "")
    try:
        email = sign_in_rules.parse_email(raw)
    except ValidationFailed as error:
        page = render_template(
            "web/login.html",
            next=target,
            email_error=error.detail,
            email_value=raw if len(raw) <= 320 else "",
        )
        return page, 422
    wait = limits.spend_recipient_budget(email)
    if wait is not None:
        return limits.refusal(limits.RECIPIENT, wait)
    issued = request_link(db.session, email=email, admin_emails=signin.admin_emails())
    if issued:
        outbox().send(sign_in_mail(email, issued))
    return render_template("web/login.html", next=target, email_notice=LINK_SENT)


@bp.route("/login/email/<token>", methods=["GET", "POST"])
def login_link(token: str) -> Any:
    """GET shows a Sign in button (mail scanners that prefetch links only GET, and a
    GET changes nothing); its POST uses the link, once."""
    if request.method == "GET":
        if not link_is_usable(db.session, token):
            return _link_refused()
        return render_template("web/login_link.html", token=token)
    grant = use_link(db.session, token=token, admin_emails=signin.admin_emails())
    if grant is None:
        return _link_refused()
    return redirect(signin.landing(signin.sign_in_by_link(grant)))


def _link_refused() -> tuple[str, int]:
    return render_template("web/login_link.html", token=None), 410


@bp.post("/logout")
def logout() -> Any:
    signin.sign_out()
    flash("You have signed out.", "info")
    return redirect(url_for("web.login"))


# -- artist -------------------------------------------------------------------------------


@bp.get("/artists/<artist_id>")
@signin.signed_in
def artist(artist_id: str) -> Any:
    signin.check_may_view("artist", artist_id)
    return _render_artist(artist_id)


@bp.post("/artists/<artist_id>/plan")
@signin.signed_in
def artist_plan(artist_id: str) -> Any:
    signin.check_may_view("artist", artist_id)
    get_artist(db.session, artist_id)
    try:
        rates, hold = forms.plan_from_form(request.form)
        plan = set_artist_plan(
            db.session, artist_id=artist_id, level_rates_bps=rates, hold_days=hold
        )
    except PlanError as error:
        return _render_artist(artist_id, plan_error=error, form=request.form), 422
    flash(f"Saved reward plan version {plan.version}.", "info")
    return redirect(url_for("web.artist", artist_id=artist_id) + "#plan")


@bp.post("/artists/<artist_id>/insights")
@signin.signed_in
def artist_refresh(artist_id: str) -> Any:
    signin.check_may_view("artist", artist_id)
    from royalties.services.insights import artist_insights

    get_artist(db.session, artist_id)
    artist_insights(db.session, artist_id, force=True)
    flash("Figures recomputed.", "info")
    return redirect(url_for("web.artist", artist_id=artist_id))


def _render_artist(
    artist_id: str,
    *,
    plan_error: PlanError | None = None,
    form: Mapping[str, str] | None = None,
    force: bool = False,
) -> str:
    page = artist_page(db.session, artist_id, force=force)
    roi = page.insights.get("roi") or {}
    # Figures add up minor units of every currency sold; name it when there is one.
    currencies = roi.get("currencies") or page.currencies
    currency = currencies[0] if len(currencies) == 1 else None

    daily = charts.daily_charts(
        page.insights.get("series") or [],
        fmt=_axis_money(currency),
        unit=currency or "minor units",
    )
    picture = page.insights.get("picture") or {}
    graph_svg = charts.referral_graph(
        picture, chart_id="referral-graph", title="Referral graph of this artist's fans"
    )
    # A node's "level" in the picture is its depth in the graph (0: no sponsor).
    depths = sorted({int(n.get("level") or 0) for n in picture.get("nodes") or []})
    handles = {str(n["id"]): str(n.get("handle") or "") for n in picture.get("nodes") or []}
    for rows in (page.insights.get("top") or {}).values():
        handles.update({str(r["fan_id"]): str(r.get("handle") or "") for r in rows})
    rank = request.args.get("rank", "attributed_revenue")
    if rank not in RANKINGS:
        rank = "attributed_revenue"
    values = forms.plan_values(page.plan, form)
    return render_template(
        "web/artist.html",
        page=page,
        disabled_webhooks=page.disabled_webhooks,
        currency=currency,
        charts=daily,
        graph=graph_svg,
        depths=depths,
        handles=handles,
        rank=rank,
        rankings=RANKINGS,
        top_rows=(page.insights.get("top") or {}).get(rank) or [],
        roi=roi,
        values=values,
        plan_error=plan_error,
        invalid=forms.invalid_fields(plan_error, values),
        limits={
            "levels": MAX_DEPTH,
            "total": plans.MAX_TOTAL_BPS,
            "hold": plans.MAX_HOLD_DAYS,
        },
    )


def _axis_money(currency: str | None) -> charts.Formatter:
    """Amounts on a chart's axis: in the currency's units, the currency named once in
    the chart's title instead of on every tick."""

    def axis(value: int) -> str:
        return formatting.money(value, currency).removesuffix(f" {currency}")

    return axis


# -- fan ----------------------------------------------------------------------------------


@bp.get("/fans/<fan_id>")
@signin.signed_in
def fan(fan_id: str) -> Any:
    signin.check_may_view("fan", fan_id)
    return _render_fan(fan_id)


@bp.post("/fans/<fan_id>/notifications")
@signin.signed_in
def fan_notifications(fan_id: str) -> Any:
    """Email notifications on or off (the fan, or an admin on its behalf)."""
    signin.check_may_view("fan", fan_id)
    choice = request.form.get("notifications", "")
    if choice not in NOTIFICATION_CHOICES:
        get_fan(db.session, fan_id)
        return _render_fan(fan_id, notify_error="Choose On or Off, then Save."), 422
    on = NOTIFICATION_CHOICES[choice]
    set_notifications(db.session, fan_id, on=on)
    flash("Email notifications are on." if on else "Email notifications are off.", "info")
    return redirect(url_for("web.fan", fan_id=fan_id) + "#notifications", code=303)


def _render_fan(fan_id: str, *, notify_error: str | None = None) -> str:
    artist = request.args.get("artist", "")
    page = fan_page(
        db.session,
        fan_id,
        public_base_url=current_app.config["PUBLIC_BASE_URL"],
        minimums=minimums(current_app.config),
        artist_id=artist if looks_like_id(artist) else None,
    )
    return render_template(
        "web/fan.html",
        page=page,
        earnings_charts=[
            earnings_chart(series, fmt=_axis_money(series.currency)) for series in page.over_time
        ],
        artist=(page.shareable and artist) or None,
        platform_country=current_app.config["PLATFORM_COUNTRY"],
        reasons=FAN_REASONS,
        notify_error=notify_error,
    )


@bp.get("/fans/<fan_id>/statement.csv")
@signin.signed_in
def fan_statement_csv(fan_id: str) -> Any:
    """The CSV statement of ``GET /v1/fans/<id>/statement?format=csv``, with the session
    instead of a bearer key; optional ``from`` and ``to`` days (inclusive, UTC)."""
    from royalties.services import statements

    signin.check_may_view("fan", fan_id)
    get_fan(db.session, fan_id)
    start = forms.day(request.args.get("from"), "from")
    end = forms.day(request.args.get("to"), "to")
    if end is not None:
        end += timedelta(days=1)  # through the end of that day
    statement = statements.fan_statement(db.session, fan_id, start=start, end=end)
    span = "-".join(f"{d:%Y%m%d}" for d in (start, end) if d) or "all"
    return Response(
        statements.statement_csv(statement),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="statement-{fan_id}-{span}.csv"'},
    )


# -- errors -------------------------------------------------------------------------------


@bp.errorhandler(RoyaltiesError)
def _domain_error(error: RoyaltiesError) -> Any:
    status = status_for(error)
    if status == 500:
        log.error("domain invariant broken: %s", error, exc_info=error)
        return _error_page(500, "Something went wrong on our side; it has been logged.")
    return _error_page(status, error.detail, getattr(error, "title", None))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    status = error.code or 500
    return _error_page(status, error.description or "")


@bp.errorhandler(Exception)
def _unexpected(error: Exception) -> Any:
    log.exception("unhandled error in the dashboard")
    return _error_page(500, "Something went wrong on our side; it has been logged.")


def _error_page(status: int, detail: str, title: str | None = None) -> tuple[str, int]:
    titles = {400: "Bad request", 403: "Not yours", 404: "Not found", 500: "Server error"}
    title = title or titles.get(status, "Something went wrong")
    return render_template("web/error.html", status=status, title=title, detail=detail), status
