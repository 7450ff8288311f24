"""The operator's payout runs in the dashboard: start one (it runs on a thread of this
web process, recording its progress), list the runs newest first, and open one to see
its payouts, with Stripe's reason for each that failed. The rules -- one run at a time,
when a run counts as stopped -- are ``royalties/payouts/tracking.py``'s."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for

from api.config import minimums
from api.extensions import db, stripe_gateway
from api.web import signin
from api.web.views import bp
from royalties import payouts
from royalties.errors import Forbidden, NotConfigured, RunInProgress
from royalties.payouts import tracking

PAGE = 50
_STALE = int(tracking.STALE_AFTER.total_seconds() // 60)
THREADS = "royalties.payout_runs"  # app.extensions: the runs this process started


def _admin() -> signin.Viewer:
    viewer = signin.viewer()
    if viewer.role != "admin":
        raise Forbidden("payout runs are the operator's")
    return viewer


def start_payout_run(viewer: signin.Viewer) -> str:
    """Where the dashboard starts a payout run, and the only place: record it (refused
    with ``RunInProgress`` while another runs) and start it on a background thread.
    Anything that must happen when an operator starts a run belongs here."""
    config = current_app.config
    gateway = stripe_gateway()  # NotConfigured before anything is recorded
    run_id = tracking.start(
        db.session,
        requested_by=viewer.who,
        min_payout=config["MIN_PAYOUT"],
        actor=viewer.actor,
    )
    thread = tracking.in_background(
        db.engine,
        gateway,
        run_id,
        min_payout=minimums(config),
        concurrency=config["PAYOUT_CONCURRENCY"],
    )
    started: list[threading.Thread] = current_app.extensions.setdefault(THREADS, [])
    started[:] = [t for t in started if t.is_alive()] + [thread]
    return run_id


@bp.route("/admin/payouts", methods=["GET", "POST"])
@signin.signed_in
def admin_payouts() -> Any:
    viewer = _admin()
    if request.method == "POST":
        try:
            run_id = start_payout_run(viewer)
        except RunInProgress as exc:
            runs = payouts.list_runs(db.session, limit=PAGE, cursor=None)
            return _list(runs, refused=exc.detail), 409
        except NotConfigured as exc:
            runs = payouts.list_runs(db.session, limit=PAGE, cursor=None)
            return _list(runs, refused=f"Payouts cannot run here: {exc.detail}."), 503
        flash(f"Started payout run {run_id}.", "info")
        return redirect(url_for("web.admin_payout_run", run_id=run_id), code=303)
    runs = payouts.list_runs(db.session, limit=PAGE, cursor=request.args.get("cursor"))
    return _list(runs, refused=None)


def _list(runs: Any, *, refused: str | None) -> str:
    return render_template("web/payouts.html", runs=runs, refused=refused, stale_minutes=_STALE)


@bp.get("/admin/payouts/runs/<run_id>")
@signin.signed_in
def admin_payout_run(run_id: str) -> Any:
    _admin()
    run = payouts.get_run(db.session, run_id)
    items = payouts.run_payouts_page(
        db.session, run_id, limit=PAGE, cursor=request.args.get("cursor")
    )
    return render_template("web/payout_run.html", run=run, items=items, stale_minutes=_STALE)


@bp.get("/admin/payouts/runs/<run_id>/progress.json")
@signin.signed_in
def admin_payout_run_progress(run_id: str) -> Any:
    """What the run page polls while the run is running."""
    _admin()
    run = payouts.get_run(db.session, run_id)
    return jsonify({k: run[k] for k in ("id", "status", "total", "done", "error")})
