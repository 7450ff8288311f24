"""The security headers every answer carries, in one place for the app's after-request
hook and the click redirect's fast path (``api.clicks``)."""

from __future__ import annotations

from typing import Any

# HTML pages load scripts and styles from this origin only, and are never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'"
)
_ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)


def security_headers(mimetype: str | None, path: str) -> list[tuple[str, str]]:
    """The headers an answer of ``mimetype`` to ``path`` gets (where it has none of its
    own of that name)."""
    headers = list(_ALWAYS)
    if mimetype == "text/html":
        headers.append(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
    if path.startswith("/v1/"):
        # API answers carry keys, balances and payouts: no cache may keep them.
        headers.append(("Cache-Control", "no-store"))
    return headers


def add_security_headers(headers: Any, mimetype: str | None, path: str) -> None:
    """Give a response's ``headers`` those of ``security_headers`` it has none of."""
    for name, value in security_headers(mimetype, path):
        headers.setdefault(name, value)
