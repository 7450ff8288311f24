"""Artist insights, the plan simulator, and fan statements (JSON or CSV)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import own, require
from api.extensions import db
from api.schemas.insights import (
    InsightsOut,
    InsightsQuery,
    SimulateQuery,
    SimulationOut,
    StatementOut,
    StatementQuery,
)
from royalties.insights import series_within
from royalties.services import insights, statements

blp = Blueprint(
    "insights",
    __name__,
    url_prefix="/v1",
    description="Influence analytics, program return, plan simulator, fan statements",
)

CSV_MIME = "text/csv"


@blp.route("/artists/<artist_id>/insights")
class ArtistInsights(MethodView):
    @require("artist", "admin")
    @blp.arguments(InsightsQuery(), location="query")
    @blp.response(200, InsightsOut)
    def get(self, query: dict[str, Any], artist_id: str) -> dict[str, Any]:
        """Top fans, referral graph, program return and daily series (that artist, admin)

        The graph figures cover the whole history and are cached for a few minutes
        (`refresh=true` recomputes them); `from`/`to` narrow the program return and the
        series to [from, to).
        """
        own(artist_id, what="artist")
        data = insights.artist_insights(db.session, artist_id, force=query["refresh"])
        start, end = query["start"], query["end"]
        if start is not None or end is not None:
            roi = insights.program_return(db.session, artist_id, start=start, end=end)
            data = {**data, "roi": roi, "series": series_within(data["series"], start, end)}
        return data


@blp.route("/artists/<artist_id>/insights/simulate")
class PlanSimulation(MethodView):
    @require("artist", "admin")
    @blp.arguments(SimulateQuery(), location="query")
    @blp.response(200, SimulationOut)
    def get(self, query: dict[str, Any], artist_id: str) -> dict[str, Any]:
        """What another reward plan would have paid on every recorded sale (that artist, admin)

        Replays each sale's stored chain through the plan, gross of refunds, against the
        rewards actually booked. Nothing is written. An invalid plan is 422.
        """
        own(artist_id, what="artist")
        return insights.simulate(db.session, artist_id, query["level_rates_bps"])


@blp.route("/fans/<fan_id>/statement")
class FanStatement(MethodView):
    @require("fan", "admin")
    @blp.arguments(StatementQuery(), location="query")
    @blp.response(200, StatementOut)
    @blp.doc(
        responses={
            200: {
                "content": {
                    CSV_MIME: {
                        "schema": {
                            "type": "string",
                            "description": "header, one row per line, then opening, "
                            "closing and total balances per currency",
                        }
                    }
                }
            }
        }
    )
    def get(self, query: dict[str, Any], fan_id: str) -> Any:
        """Every reward, reversal and payout of a fan, with balances (that fan, admin)

        JSON by default; CSV with `format=csv` or `Accept: text/csv`. The totals equal
        the balance endpoint's figures.
        """
        own(fan_id, what="fan")
        start, end = query["start"], query["end"]
        statement = statements.fan_statement(db.session, fan_id, start=start, end=end)
        if not _wants_csv(query["format"]):
            return statement
        name = f"statement-{fan_id}-{_stamp(start, 'start')}-{_stamp(end, 'now')}.csv"
        return Response(
            statements.statement_csv(statement),
            mimetype=CSV_MIME,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _wants_csv(fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    best = request.accept_mimetypes.best_match(["application/json", CSV_MIME])
    return best == CSV_MIME


def _stamp(moment: datetime | None, default: str) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ") if moment else default
