"""Extensions, created unbound and bound in ``create_app``.

``db`` gives each request its own SQLAlchemy session, closed at teardown. Views never
commit: the services they call do.
"""

from __future__ import annotations

from flask import Flask, g
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from royalties.clicks import BatchedClicks
from royalties.db import make_engine, make_sessionmaker
from royalties.notify.mail import Outbox, transport_for
from royalties.payments.stripe import StripeGateway, gateway_from_config


class Database:
    def __init__(self) -> None:
        self._app: Flask | None = None

    def init_app(self, app: Flask, engine: Engine | None = None) -> None:
        engine = engine or make_engine(app.config["DATABASE_URL"])
        app.extensions["royalties.db"] = (engine, make_sessionmaker(engine))
        app.teardown_appcontext(self._close)

    @staticmethod
    def _factory() -> sessionmaker[Session]:
        from flask import current_app

        return current_app.extensions["royalties.db"][1]  # type: ignore[no-any-return]

    @property
    def engine(self) -> Engine:
        from flask import current_app

        return current_app.extensions["royalties.db"][0]  # type: ignore[no-any-return]

    @property
    def session(self) -> Session:
        if "db_session" not in g:
            g.db_session = self._factory()()
        return g.db_session  # type: ignore[no-any-return]

    @staticmethod
    def _close(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()


db = Database()

__all__ = [
    "batched_clicks",
    "db",
    "gateway_from_config",
    "init_clicks",
    "init_mail",
    "outbox",
    "stripe_gateway",
]

CLICK_BATCH_SECONDS, CLICK_LINK_CACHE_SECONDS = 0.25, 5.0  # the defaults outside TESTING


def init_clicks(app: Flask) -> None:
    """Batched clicks (``royalties.clicks``) unless ``CLICK_BATCH_SECONDS`` is 0; unset,
    on outside TESTING (the tests' apps write each click before answering)."""
    interval = app.config.get("CLICK_BATCH_SECONDS")
    if interval is None:
        interval = 0.0 if app.testing else CLICK_BATCH_SECONDS
    cache = app.config.get("CLICK_LINK_CACHE_SECONDS")
    cache = CLICK_LINK_CACHE_SECONDS if cache is None else cache
    if interval > 0:
        engine = app.extensions["royalties.db"][0]
        app.extensions["royalties.clicks"] = BatchedClicks(engine, interval, cache)


def batched_clicks() -> BatchedClicks | None:
    """The app's batched clicks; None when each click is written before its answer."""
    from flask import current_app

    return current_app.extensions.get("royalties.clicks")


def forget_link(code: str) -> None:
    """This process disabled the link: its cached target goes at once."""
    clicks = batched_clicks()
    if clicks is not None:
        clicks.targets.forget(code)


def stripe_gateway() -> StripeGateway:
    """The app's one Stripe gateway, built from config on first use."""
    from flask import current_app

    gateway = current_app.extensions.get("royalties.stripe")
    if gateway is None:
        gateway = gateway_from_config(current_app.config)
        current_app.extensions["royalties.stripe"] = gateway
    return gateway  # type: ignore[no-any-return]


def init_mail(app: Flask) -> None:
    """The app's outbox, from ``SMTP_URL`` (checked now, so a bad URL stops the start)."""
    app.extensions["royalties.mail"] = Outbox(transport_for(app.config.get("SMTP_URL")))


def outbox() -> Outbox:
    from flask import current_app

    return current_app.extensions["royalties.mail"]  # type: ignore[no-any-return]
