"""The application factory: config, extensions, blueprints, error handlers."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, render_template

from api import config as config_module
from api import errors
from api.errors import ProblemApi
from api.extensions import db


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config_module.from_env())
    if config:
        app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    fee = app.config["PLATFORM_FEE_BPS"]
    if not 0 <= fee <= 5000:
        raise ValueError(f"PLATFORM_FEE_BPS must be 0 to 5000, got {fee}")

    db.init_app(app, engine=app.config.get("ENGINE"))

    api = ProblemApi(
        app,
        spec_kwargs={
            "info": {
                "description": "Attributes each sale up to five levels of fans, keeps a "
                "double-entry ledger of every cent, and pays fans through Stripe Connect."
            }
        },
    )
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "an API key"}
    )
    app.extensions["royalties.api"] = api
    errors.register(app)

    from api.resources import accounts, catalog, fans, links, money, payouts, review, sales

    for module in (accounts, catalog, fans, links, sales, money, payouts, review):
        api.register_blueprint(module.blp)

    @app.get("/docs")
    def docs() -> str:
        """A human-readable page rendered from the OpenAPI document (no CDN needed)."""
        return render_template("docs.html", spec=api.spec.to_dict())

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return app
