"""The dashboard: server-rendered pages for artists, fans and admins.

Registered on the Flask app directly (``app.register_blueprint``), not through the
flask-smorest Api, so it stays out of the OpenAPI document.
"""

from api.web import (  # noqa: F401 - their pages
    audit,
    content,
    links,
    onboarding,
    operator,
    payout_runs,
    review,
    webhooks,
    welcome,
)
from api.web.join import public
from api.web.views import bp

__all__ = ["bp", "public"]
