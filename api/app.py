"""The application factory: config, extensions, blueprints, error handlers."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from api import config as config_module
from api import errors, guards, metrics, reference, telemetry
from api.clicks import ClickRedirects
from api.errors import ProblemApi
from api.extensions import db, init_clicks, init_mail
from api.headers import add_security_headers
from api.limits import limiter
from api.web.signin import PageSessions


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.session_interface = PageSessions()  # sessions for the dashboard's pages only
    app.config.update(config_module.from_env())
    if config:
        app.config.update(config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    fee = app.config["PLATFORM_FEE_BPS"]
    if not 0 <= fee <= 5000:
        raise ValueError(f"PLATFORM_FEE_BPS must be 0 to 5000, got {fee}")
    proxies = app.config.get("TRUSTED_PROXIES", 0)
    if not 0 <= proxies <= 5:
        raise ValueError(f"TRUSTED_PROXIES must be 0 to 5, got {proxies}")

    telemetry.register(app)  # first: every later hook runs with the request's id
    db.init_app(app, engine=app.config.get("ENGINE"))
    init_mail(app)
    init_clicks(app)

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
    metrics.register(app)
    limiter.init_app(app)
    guards.register(app)  # after the limiter, so a refused request still spends its budget

    from api.resources import (
        accounts,
        audit,
        catalog,
        fans,
        insights,
        keys,
        links,
        money,
        payouts,
        review,
        sales,
        webhooks,
    )

    modules = (
        accounts,
        catalog,
        fans,
        links,
        sales,
        money,
        payouts,
        keys,
        webhooks,
        review,
        insights,
        audit,
    )
    for module in modules:
        api.register_blueprint(module.blp)

    from api import web

    # On the app, not the Api: the dashboard's pages stay out of /openapi.json.
    app.register_blueprint(web.bp)
    app.register_blueprint(web.public)

    @app.get("/docs")
    def docs() -> str:
        """The API reference, rendered on the server from the OpenAPI document."""
        if "royalties.reference" not in app.extensions:  # the document is fixed once built
            app.extensions["royalties.reference"] = reference.build(api.spec.to_dict())
        return render_template(
            "docs.html", ref=app.extensions["royalties.reference"], locations=reference.LOCATIONS
        )

    @app.after_request
    def _security_headers(response: Response) -> Response:
        add_security_headers(response.headers, response.mimetype, request.path)
        return response

    batched = app.extensions.get("royalties.clicks")
    if batched is not None:  # a click needs no database: answered before Flask (api.clicks)
        app.wsgi_app = ClickRedirects(app, batched, app.wsgi_app)  # type: ignore[method-assign]
    if proxies:  # outermost: the client's address and scheme from that many proxies' headers
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    return app
