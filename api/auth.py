"""Bearer API keys, roles and ownership checks.

``@require("admin", "artist")`` on a view method authenticates the caller and checks
the role; ``own(owner_id)`` then checks that a non-admin caller owns what it touches.
Unknown, revoked or malformed keys are 401; a valid key of the wrong role is 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from api.extensions import db
from royalties.audit import Actor
from royalties.errors import Forbidden
from royalties.errors import Unauthenticated as Unauthorized
from royalties.keys import Principal, authenticate

F = TypeVar("F", bound=Callable[..., Any])

SECURITY = [{"bearerAuth": []}]


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <api key>'")
        principal = authenticate(db.session, token.strip())
        if principal is None:
            raise Unauthorized("the API key is unknown or revoked")
        g.principal = principal
    return principal


def actor() -> Actor:
    """The caller as the audit log names it (``royalties/audit.py``)."""
    principal = current_principal()
    return Actor(principal.key_id, principal.role, principal.owner_id)


def require(*roles: str) -> Callable[[F], F]:
    """Authenticate the request and allow only ``roles``.

    Put it above the flask-smorest decorators so the key is checked before the body is
    parsed: a caller without the right key learns nothing about field rules.
    """

    def decorator(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal.role not in roles:
                raise Forbidden(f"this needs a key of role {' or '.join(roles)}")
            return fn(*args, **kwargs)

        # Document the requirement (wraps() shares fn's _apidoc dict with the wrapper).
        apidoc = wrapper.__dict__.setdefault("_apidoc", {})
        apidoc.setdefault("manual_doc", {})["security"] = SECURITY
        apidoc["manual_doc"]["x-roles"] = list(roles)  # shown on /docs next to the key
        apidoc["manual_doc"].setdefault("responses", {}).update(
            {
                401: {"description": "No, unknown or revoked API key"},
                403: {"description": "Wrong role, or not the owner"},
            }
        )
        return wrapper  # type: ignore[return-value]

    return decorator


def own(owner_id: str, *, what: str = "resource") -> Principal:
    """Allow admins, and the principal whose owner id is ``owner_id``."""
    principal = current_principal()
    if principal.role != "admin" and principal.owner_id != owner_id:
        raise Forbidden(f"this {what} belongs to someone else")
    return principal
