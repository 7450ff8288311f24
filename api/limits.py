"""Rate limits (Flask-Limiter): per client address on the public paths, per API key elsewhere.

The route decides which budget a request spends:

- ``POST /v1/fans`` (sign-up), ``POST /v1/share-links``, ``GET /l/<code>`` (clicks),
  ``POST /dashboard/login`` (with the sign-in link's own POST) and
  ``POST /dashboard/login/email`` (asking for a link): per client address, one budget
  each (``RATELIMIT_SIGNUP``, ``_LINKS``, ``_CLICKS``, ``_LOGIN``, ``_LOGIN_EMAIL``);
- asking for a sign-in link also spends a budget per email address asked about
  (``RATELIMIT_LOGIN_EMAIL_RECIPIENT``), counted under the address's SHA-256 whether an
  account uses it or not (a limit only known addresses hit would tell them apart), once
  the form is read (``spend_recipient_budget``);
- every other endpoint that needs an API key: one budget per key shared by all of them
  (``RATELIMIT_API``), counted under the SHA-256 of the bearer key when the request
  carries a well-formed one, else under the address, so keyless requests count too;
- the rest (docs, health checks, Stripe webhooks) is not limited.

Limits are checked before authentication and before the body is read, so a refused
request costs one counter increment. Over the limit the answer is 429 problem+json
``rate_limited`` with ``Retry-After`` in seconds; the click redirect and the sign-in form
answer a small HTML page instead, since a browser sees it.

Counters live in memory (per process) unless ``RATELIMIT_STORAGE_URI`` names a shared
store such as Redis; if that store fails, each process falls back to counting in memory
rather than refusing or failing requests.

The two hottest budgets, clicks and sales (``DIRECT``), are spent with one call to
``limits`` before each request (``spend``); Flask-Limiter counts the others, and its
hooks are skipped for the requests it does not count (its own setup cost a click a
sixth of a bare Flask request). Both use the same store, strategy and key prefix. A
batch of N purchases spends N units (``spend_units``).

Flask-Limiter keeps its storage and settings on the ``Limiter`` object, while one
process may build many apps with different configs (the tests do); so ``limiter`` is an
unbound extension that gives each app its own ``flask_limiter.Limiter``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from apispec import BasePlugin
from flask import Flask, Response, current_app, g, request
from flask_limiter import Limit, Limiter, RateLimitExceeded, RequestLimit
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import STRATEGIES, RateLimiter

from api.auth import SECURITY
from api.config import RATE_LIMIT_DEFAULTS
from api.errors import PROBLEM_MIME, problem
from royalties.keys import hash_key, well_formed

log = logging.getLogger("royalties.api")

EXTENSION = "royalties.limiter"
API = "RATELIMIT_API"
SALES = "RATELIMIT_SALES"
CLICKS = "RATELIMIT_CLICKS"
LOGIN = "RATELIMIT_LOGIN"
LOGIN_EMAIL = "RATELIMIT_LOGIN_EMAIL"
RECIPIENT = "RATELIMIT_LOGIN_EMAIL_RECIPIENT"

# (method, URL rule) -> the setting holding its per-address limit
BY_ADDRESS: dict[tuple[str, str], str] = {
    ("POST", "/v1/fans"): "RATELIMIT_SIGNUP",
    ("POST", "/v1/share-links"): "RATELIMIT_LINKS",
    ("GET", "/l/<code>"): CLICKS,
    ("POST", "/dashboard/login"): LOGIN,  # guessing keys through the sign-in form
    ("POST", "/join/<artist_id>"): "RATELIMIT_SIGNUP",  # the join page signs fans up too
    ("POST", "/dashboard/fans/<fan_id>/links"): "RATELIMIT_LINKS",
    ("POST", "/dashboard/login/email/<token>"): LOGIN,
    ("POST", "/dashboard/login/email"): LOGIN_EMAIL,  # mail sent on a stranger's behalf
}
# (method, URL rule) -> its own per-key budget: storefronts report every sale and refund,
# far more often than any person calls the API, so they must not share a person's budget.
BY_KEY: dict[tuple[str, str], str] = {
    ("POST", "/v1/purchases"): SALES,
    ("POST", "/v1/purchases/batch"): SALES,  # one unit per item: see spend_units
    ("POST", "/v1/purchases/<purchase_id>/refunds"): SALES,
}
# Budgets spent with one call each (``spend``, before each request) rather than through
# Flask-Limiter: the two hottest paths, a click and a sale, where its per-request
# machinery was a large share of the cost. Flask-Limiter counts the others.
DIRECT = frozenset({CLICKS, SALES})
NOT_BY_FLASK_LIMITER = frozenset({None, *DIRECT})
DEAD_UNTIL = EXTENSION + ".store_dead_until"
STORE_RETRY_SECONDS = 10.0
# Counter names: a setting's budget is shared by every route that spends it.
_SCOPES = {
    "RATELIMIT_SIGNUP": "signup",
    "RATELIMIT_LINKS": "share-links",
    CLICKS: "clicks",
    LOGIN: "login",
    LOGIN_EMAIL: "login-email",
    RECIPIENT: "login-email-recipient",
    API: "api",
    SALES: "sales",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Too many requests</title></head>
<body><h1>Too many requests</h1>
<p>{what} Please try again in {seconds} seconds.</p></body></html>
"""
# Budgets spent by a browser, which gets a page rather than problem+json.
PAGES = {
    "": "Too many requests came from your address.",  # any other page
    CLICKS: "Too many links were followed from your address.",
    LOGIN: "Too many sign-in attempts came from your address.",
    LOGIN_EMAIL: "Too many sign-in links were asked for from your address.",
    RECIPIENT: "Too many sign-in links were asked for that email address.",
}


def client_address() -> str:
    return address_key(request.remote_addr)


def address_key(remote_addr: str | None) -> str:
    """What a budget counted per client address is counted under."""
    return "addr:" + (remote_addr or "unknown")


def api_client() -> str:
    """The bearer key's hash when the request carries a well-formed key, else the address."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and well_formed(token):
        return "key:" + hash_key(token)
    return client_address()


def needs_key(view: Callable[..., Any] | None, method: str) -> bool:
    """True when the view serving ``method`` is documented as needing an API key.

    ``api.auth.require`` documents every view it guards with ``SECURITY``; reading that
    keeps the rule "every authenticated endpoint" true for endpoints added later.
    """
    target: Any = view
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        target = getattr(view_class, method.lower(), None)
    apidoc: dict[str, Any] = getattr(target, "_apidoc", None) or {}
    return bool(apidoc.get("manual_doc", {}).get("security") == SECURITY)


def budget() -> str | None:
    """The setting whose limit the current request counts against, or None."""
    rule = request.url_rule
    if rule is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    setting = BY_ADDRESS.get((method, rule.rule)) or BY_KEY.get((method, rule.rule))
    if setting is not None:
        return setting
    view = current_app.view_functions.get(request.endpoint or "")
    return API if needs_key(view, method) else None


def request_budget() -> str | None:
    """``budget()`` of the current request, worked out once per request."""
    if "rate_budget" not in g:
        g.rate_budget = budget()
    return g.rate_budget  # type: ignore[no-any-return]


def _counted_by() -> str:
    return api_client() if request_budget() in (API, SALES) else client_address()


def _the_limit() -> Limit:
    """One limit whose rate, key and counter follow the request's budget.

    Flask-Limiter parses and checks every default limit on every request; one limit that
    resolves its budget once per request costs a fifth of one limit per budget."""
    return Limit(
        limit_provider=lambda: str(current_app.config[request_budget() or API]),
        key_function=_counted_by,
        scope=lambda _endpoint: _SCOPES[request_budget() or API],
        shared=True,
    )


class RateLimits:
    """The unbound extension; ``init_app`` configures and attaches one Limiter per app."""

    def init_app(self, app: Flask) -> None:
        config = app.config
        for setting, (default, testing_default) in RATE_LIMIT_DEFAULTS.items():
            if not config.get(setting):
                config[setting] = testing_default if app.testing else default
            try:
                parse_many(config[setting])
            except ValueError:
                raise ValueError(
                    f"{setting} must be a rate limit such as '20/minute', got {config[setting]!r}"
                ) from None
        config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
        if not config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
            config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
            if config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://")):
                # A rate limiter must not hang requests when its store is unreachable.
                config.setdefault(
                    "RATELIMIT_STORAGE_OPTIONS",
                    {"socket_connect_timeout": 1, "socket_timeout": 1},
                )
        if not config.setdefault("RATELIMIT_ENABLED", True):
            return
        if config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
            # The same counters in this process's memory, without a timer thread each.
            config["RATELIMIT_STORAGE_URI"] = "swept-memory://"

        # Flask-Limiter reads the other RATELIMIT_* settings (storage, key prefix,
        # strategy) from the app config itself.
        limiter = Limiter(client_address, default_limits=[_the_limit()])
        limiter.request_filter(lambda: request_budget() in NOT_BY_FLASK_LIMITER)
        hooks = _hook_lists(app)
        before = [len(found) for found in hooks]
        limiter.init_app(app)
        # Requests that spend no budget here, or spend one of DIRECT, skip Flask-Limiter's
        # hooks: even its request filter runs after a setup that cost a click a sixth of
        # what a whole bare Flask request costs (bench/purchases.py).
        for found, had in zip(hooks, before, strict=True):
            found[had:] = [_unless_spent_directly(hook) for hook in found[had:]]
        app.before_request(spend_units)  # right after Flask-Limiter's own check
        app.extensions[EXTENSION] = limiter
        app.register_error_handler(RateLimitExceeded, _too_many_requests)

        api = app.extensions.get("royalties.api")
        if api is not None:  # document 429 on every limited operation registered from now on
            plugin = OpenApiLimits(config)
            plugin.init_spec(api.spec)
            api.spec.plugins.append(plugin)


limiter = RateLimits()


def _hook_lists(app: Flask) -> tuple[list[Any], list[Any], list[Any]]:
    """The app-wide before-request, after-request and teardown hooks, as Flask keeps them."""
    return (
        app.before_request_funcs.setdefault(None, []),
        app.after_request_funcs.setdefault(None, []),
        app.teardown_request_funcs.setdefault(None, []),
    )


def _unless_spent_directly(hook: Callable[..., Any]) -> Callable[..., Any]:
    """``hook`` for the requests Flask-Limiter counts; for the others, what a hook that
    did nothing would return (None; an after-request hook: the response)."""

    def flask_limiter_hook(*args: Any) -> Any:
        if request_budget() in NOT_BY_FLASK_LIMITER:
            return args[0] if args else None
        return hook(*args)

    return flask_limiter_hook


def _retry_after() -> int:
    """Whole seconds until the breached limit's window resets (at least 1)."""
    breached: RequestLimit | None = current_app.extensions[EXTENSION].current_limit
    if breached is None:
        return 1
    try:
        reset_at = float(breached.window[0])
    except Exception:  # the store failed between the check and now; any hint will do
        log.warning("could not read the rate limit window", exc_info=True)
        return 60
    return max(1, math.ceil(reset_at - time.time()))


def too_many_page(setting: str, retry_after: int) -> Response:
    """The 429 page a browser gets when ``setting``'s budget is spent."""
    body = _PAGE.format(what=PAGES[setting], seconds=retry_after)
    response = Response(body, status=429, mimetype="text/html")
    response.headers["Retry-After"] = str(retry_after)
    response.headers["Cache-Control"] = "no-store"
    return response


def spend(setting: str, counted_by: str, cost: int = 1) -> int | None:
    """Spend ``cost`` of ``setting``'s budget for ``counted_by`` (an address, a key's or
    an email's hash) with one call to ``limits``, not Flask-Limiter's per-request
    machinery; the seconds to wait when that would go over the limit (then nothing is
    spent), else None.

    Tested, then spent: concurrent requests of one client may overshoot a limit by one
    request's cost, never fail. In the limiter's own store and strategy (so Redis shares
    it between workers); a store that fails is left alone for ``STORE_RETRY_SECONDS``
    and this process counts in its own memory meanwhile, as the other budgets do."""
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    if limiter is None:  # limits switched off
        return None
    prefix = current_app.config.get("RATELIMIT_KEY_PREFIX") or ""
    keys = [*([prefix] if prefix else []), _SCOPES[setting], counted_by]
    items = _parsed(str(current_app.config[setting]))
    dead = current_app.extensions.get(DEAD_UNTIL, 0.0)
    if time.monotonic() >= dead:
        try:
            return _spend(limiter.limiter, items, keys, cost)
        except Exception:
            log.warning("rate limit store failed; counting in memory", exc_info=True)
            current_app.extensions[DEAD_UNTIL] = time.monotonic() + STORE_RETRY_SECONDS
    return _spend(_memory_strategy(), items, keys, cost)


def _spend(
    strategy: RateLimiter, items: list[RateLimitItem], keys: list[str], cost: int
) -> int | None:
    for item in items:
        if not strategy.test(item, *keys, cost=cost):
            reset_at = strategy.get_window_stats(item, *keys).reset_time
            return max(1, math.ceil(reset_at - time.time()))
    for item in items:
        strategy.hit(item, *keys, cost=cost)
    return None


@lru_cache(maxsize=64)
def _parsed(limit: str) -> list[RateLimitItem]:
    return parse_many(limit)


def spend_recipient_budget(email: str) -> int | None:
    """Count one sign-in link asked for ``email`` (normalised) against
    ``RATELIMIT_LOGIN_EMAIL_RECIPIENT``: the seconds to wait when over, else None."""
    return spend(RECIPIENT, "email:" + hash_key(email))


def refusal(setting: str, retry_after: int, limit: str | None = None) -> Response:
    """The answer when ``setting``'s budget (``""``: none known) is spent, whoever
    counted it: the refusal counted, then a page for the budgets a browser spends and
    for pages, problem+json for the API (naming ``limit``, default the setting's)."""
    from api.metrics import RATE_LIMITED

    RATE_LIMITED.labels(setting or "-").inc()
    if setting and setting in PAGES:
        return too_many_page(setting, retry_after)
    if not request.path.startswith("/v1/"):  # a page a browser asked for
        return too_many_page("", retry_after)
    return _rate_limited(limit or str(current_app.config[setting]), retry_after)


def spend_units(units: int = 1) -> Response | None:
    """Spend ``units`` of the current request's budget when it is one of ``DIRECT``:
    one before each request, and a batch of N purchases N - 1 more in its view. None
    when the budget covers them, else the 429 to answer, and nothing is spent (so a
    batch the budget cannot cover costs its first unit, as any refused request does)."""
    setting = request_budget()
    if setting not in DIRECT or units <= 0:
        return None
    wait = spend(setting, _counted_by(), units)
    return None if wait is None else refusal(setting, wait)


class SweptMemoryStorage(MemoryStorage):
    """``memory://`` without a thread per second: ``limits``' memory store starts a timer
    thread to expire counters whenever the last one has ended (about one thread start
    per request under load, a large share of a cheap request's cost). This one sweeps
    expired counters inline, at most once a second; reading a counter already drops it
    when it has expired, so the limits counted are the same."""

    STORAGE_SCHEME = ["swept-memory"]
    SWEEP_EVERY = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = time.time() + self.SWEEP_EVERY

    def _MemoryStorage__schedule_expiry(self) -> None:  # the name MemoryStorage calls
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


def _memory_strategy() -> RateLimiter:
    strategy: RateLimiter | None = current_app.extensions.get(EXTENSION + ".memory")
    if strategy is None:
        name = str(current_app.config.get("RATELIMIT_STRATEGY") or "fixed-window")
        strategy = STRATEGIES[name](MemoryStorage())
        current_app.extensions[EXTENSION + ".memory"] = strategy
    return strategy


def _too_many_requests(error: RateLimitExceeded) -> Response:
    return refusal(request_budget() or "", _retry_after(), str(error.limit.limit))


def _rate_limited(limit: str, retry_after: int) -> Response:
    return problem(
        429,
        "rate_limited",
        f"Too many requests: the limit here is {limit}; retry after {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


class OpenApiLimits(BasePlugin):
    """Adds the 429 response to the OpenAPI operations that are rate limited."""

    RETRY_AFTER = {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 1},
    }

    def __init__(self, config: Any) -> None:
        self.config = config

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            route = (method.upper(), getattr(rule, "rule", path or ""))
            setting = BY_ADDRESS.get(route) or BY_KEY.get(route)
            if setting is None and operation.get("security") == SECURITY:
                setting = API
            if setting is None:
                continue
            per = "API key" if setting in (API, SALES) else "client address"
            response: dict[str, Any] = {
                "description": f"Rate limited: more than {self.config[setting]} per {per} "
                f"(`{setting}`)",
                "headers": {"Retry-After": self.RETRY_AFTER},
            }
            if setting in PAGES:
                response["content"] = {"text/html": {"schema": {"type": "string"}}}
            else:
                response["content"] = {
                    PROBLEM_MIME: {"schema": {"$ref": "#/components/schemas/Problem"}}
                }
            operation["responses"][429] = response
