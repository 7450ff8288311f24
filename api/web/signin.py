"""Dashboard sign-in: an API key or an emailed link opens a signed session cookie; CSRF
tokens guard forms.

- The cookie (Flask's signed session, ``SECRET_KEY``) holds the key's id (or the
  sign-in link's), role and owner, never a secret. Every request looks the key up again
  by id: a key revoked since sign-in ends the session at once. A session opened by a
  link lasts until sign-out ends it in the database (a copy of the cookie dies too), or
  until its address no longer names that person (``royalties/sign_in.py``).
- Signing in clears the session and issues a fresh CSRF token (no session fixation).
  Every POST must carry the session's token in ``csrf_token``; the login form too, so a
  third-party page cannot sign a browser into someone else's account.
- Only pages have sessions: an API call (``/v1/``, a key) or a click (``/l/``, no one)
  never opens one, so neither pays for reading and signing a cookie it would ignore
  (``PageSessions``).
- Who sees what: admins any artist or fan page; an artist its own artist page; a fan its
  own fan page. Storefront keys have no dashboard.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, abort, current_app, flash, g, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from sqlalchemy import select

from api.extensions import db
from royalties import sign_in as links
from royalties.audit import Actor
from royalties.errors import Forbidden
from royalties.keys import Principal
from royalties.models import ApiKey
from royalties.models.accounts import PERSON_ROLES
from royalties.services.sign_in import end_session

F = TypeVar("F", bound=Callable[..., Any])

USER = "dashboard_user"
CSRF = "csrf_token"
DASHBOARD_ROLES = PERSON_ROLES


# Paths that never have a session: the API (authenticated by key) and the click redirect.
SESSIONLESS = ("/v1/", "/l/")


class PageSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for the pages; on ``SESSIONLESS`` paths a null
    session (Flask writes no cookie for it, and any write to it fails loudly)."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if request.path.startswith(SESSIONLESS):
            return self.make_null_session(app)
        return super().open_session(app, request)


@dataclass(frozen=True)
class Viewer:
    """Who is signed in to the dashboard: with an API key (``key_id``) or a sign-in link
    (``link_id``)."""

    key_id: str | None
    role: str
    owner_id: str | None
    link_id: str | None = None

    @property
    def actor(self) -> Actor:
        """The viewer as the audit log names it (``royalties/audit.py``)."""
        return Actor(self.key_id, self.role, self.owner_id, link_id=self.link_id)

    @property
    def who(self) -> str:
        """The id records name as who acted: the key, or the sign-in link of an email
        session (there is always one of the two)."""
        who = self.key_id or self.link_id
        assert who is not None, "a viewer signed in with neither a key nor a link"
        return who

    def may_view(self, role: str, owner_id: str) -> bool:
        return self.role == "admin" or (self.role == role and self.owner_id == owner_id)


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[CSRF] = token
    return token


def check_csrf() -> None:
    """Refuse (400) a POST whose form does not carry the session's CSRF token."""
    if request.method != "POST":
        return
    expected = session.get(CSRF)
    sent = request.form.get(CSRF, "")
    if not isinstance(expected, str) or not expected:
        abort(400, "Your session expired. Reload the page and try again.")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, "The form was not sent from this dashboard (bad CSRF token).")


def load_viewer() -> None:
    """Set ``g.viewer`` from the session, after checking the key is still active."""
    g.viewer = None
    data = session.get(USER)
    if not isinstance(data, dict):
        return
    if "link_id" in data:
        _load_link_viewer(data)
        return
    row = db.session.execute(
        select(ApiKey.role, ApiKey.owner_id).where(
            ApiKey.id == data.get("key_id"), ApiKey.revoked_at.is_(None)
        )
    ).first()
    if row is None or (row.role, row.owner_id) != (data.get("role"), data.get("owner_id")):
        session.clear()
        flash("Your API key was revoked, so you have been signed out.", "error")
        return
    g.viewer = Viewer(str(data["key_id"]), row.role, row.owner_id)


def _load_link_viewer(data: dict[str, Any]) -> None:
    link_id, role, owner_id = data.get("link_id"), data.get("role"), data.get("owner_id")
    if not (
        isinstance(link_id, str)
        and isinstance(role, str)
        and (owner_id is None or isinstance(owner_id, str))
        and links.session_is_live(db.session, link_id, role, owner_id, admin_emails())
    ):
        session.clear()
        flash("Your session has ended; sign in again.", "error")
        return
    g.viewer = Viewer(None, role, owner_id, link_id=link_id)


def admin_emails() -> frozenset[str]:
    return links.admin_addresses(current_app.config.get("ADMIN_EMAILS"))


def sign_in(principal: Principal) -> None:
    _open_session(
        {"key_id": principal.key_id, "role": principal.role, "owner_id": principal.owner_id}
    )


def sign_in_by_link(grant: links.Grant) -> Viewer:
    _open_session({"link_id": grant.link_id, "role": grant.role, "owner_id": grant.owner_id})
    return Viewer(None, grant.role, grant.owner_id, link_id=grant.link_id)


def _open_session(user: dict[str, Any]) -> None:
    session.clear()
    session[USER] = user
    session[CSRF] = secrets.token_urlsafe(32)


def sign_out() -> None:
    current: Viewer | None = g.get("viewer")
    if current is not None and current.link_id is not None:
        end_session(db.session, current.link_id)
    session.clear()


def viewer() -> Viewer:
    current: Viewer | None = g.get("viewer")
    assert current is not None, "use @signed_in"
    return current


def signed_in(fn: F) -> F:
    """Send anonymous visitors to the login form, remembering where they were going."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("viewer") is None:
            return redirect(url_for("web.login", next=request.path))
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_may_view(role: str, owner_id: str) -> Viewer:
    """The viewer, if it may open the page of ``role`` ``owner_id``; else Forbidden."""
    current = viewer()
    if not current.may_view(role, owner_id):
        raise Forbidden(f"this {role} page belongs to someone else")
    return current


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a dashboard path on this site (no open redirects), else None."""
    if not target or not target.startswith("/dashboard/"):
        return None
    if "//" in target or "\\" in target or any(ord(c) < 32 for c in target):
        return None
    return target


def landing(current: Viewer) -> str:
    if current.role == "artist" and current.owner_id:
        return url_for("web.artist", artist_id=current.owner_id)
    if current.role == "fan" and current.owner_id:
        return url_for("web.fan", fan_id=current.owner_id)
    return url_for("web.home")
