"""A fake Stripe of our own: a real HTTP server on 127.0.0.1 that speaks enough of the
v1 API (accounts, account links, balance, transfers, reversals) for the official SDK to
talk to it unchanged, plus knobs to make it fail the way the real one can. The test
suite runs it, and ``royalties dev stripe`` serves it for trying payouts locally; it is
shipped in the package for that, and is never used when the engine serves.

Use it in-process (``with FakeStripe() as fake: StripeGateway("sk_test_x", fake.url)``)
or as a separate process that a test can SIGKILL around::

    python -m api.dev.fake_stripe --port 0     # prints "listening on http://127.0.0.1:N"

and steer it over HTTP with :class:`RemoteFake` (``POST /_fake/<control>`` with JSON
keyword arguments, ``GET /_fake/transfers|accounts|requests|balance|account_links``).

What it imitates, as Stripe's documentation describes it, because the exactly-once
payout logic depends on it (none of it is kinder than Stripe):

* **Idempotency** (``Idempotency-Key`` on POST, per Stripe account -- the platform's
  unless ``Stripe-Account`` is sent). The first response is saved once the endpoint
  started executing, whatever it was: a success, a 5xx, or a state-dependent execution
  error (``balance_insufficient``, a destination without the transfers capability, an
  unknown destination...). Every later request with that key and the same parameters
  gets it back (same status and body, headers ``Idempotent-Replayed: true`` and
  ``Original-Request``). Not saved, so a retry runs anew: validation errors on the
  parameters' shape, 429s, 409s, and injected ``fail_next`` faults other than 5xx.
  The same key with other parameters (or on another endpoint) is a 400
  ``idempotency_error``; a key whose first request is still executing is a 409
  ``invalid_request_error`` / ``idempotency_key_in_use``; a key longer than 255
  characters is a 400. Keys are pruned 24 hours after first use (fake clock): a
  request with a pruned key runs as a new request.
* **Platform balance** (``GET /v1/balance``): transfers debit the available amount in
  their currency, reversals credit it back; a transfer above it is a 400
  ``balance_insufficient``. Default: 10**12 minor units of usd, eur, gbp, cad, aud and
  jpy; any other currency has 0 until ``set_balance``.
* **Currencies**: only the codes Stripe's API accepts (``SUPPORTED_CURRENCIES``);
  another one is a 400 "Invalid currency" on ``param=currency``.
* **Accounts**: ``country`` (default ``platform_country``), ``tos_acceptance
  [service_agreement]`` (``full`` or ``recipient``), capabilities separate from
  ``payouts_enabled``. A transfer needs the destination's ``transfers`` capability
  ``active`` (else 400 ``insufficient_capabilities_for_transfer``), and, for an
  account in another country than the platform, the recipient service agreement (else
  400 ``transfers_not_allowed``: Stripe lets the account be created and onboarded and
  refuses the transfer).
* **Account links**: ``POST /v1/account_links`` validates ``account``, ``type``
  (``account_onboarding`` / ``account_update``), ``refresh_url`` and ``return_url``
  (absolute http(s) URLs); the link ``{url}/connect/link/<id>`` expires after the link
  TTL (300 s) and can be visited once. A browser GET of an expired, visited or
  invalid link is a 302 to ``refresh_url``; otherwise a small HTML "Stripe
  onboarding" page with an "Agree and submit" button (form POST to
  ``/connect/link/<id>/complete``: onboarding completes, 302 to ``return_url``) and a
  "Return to the platform" link (to ``return_url``, completing nothing). The old
  shortcut ``GET /onboarding/<acct>`` completes onboarding at once.
* **Rate limits** (off by default): beyond ``per_second`` requests in any rolling
  second, counted separately for reads (GET) and writes (POST/DELETE), a 429 with code
  ``rate_limit``. Control requests and browser pages are never limited.
* **Lists** (transfers): newest first, ``destination`` / ``transfer_group`` /
  ``created[gt|gte|lt|lte]`` filters, ``limit`` 1..100 (else 400),
  ``starting_after`` / ``ending_before``, ``has_more``.
* **Clock**: ``created``, key pruning and link expiry use the fake's clock.

Knobs (methods on :class:`FakeStripe`, and controls over HTTP / :class:`RemoteFake`).
``endpoint`` is the resource: "accounts", "account_links", "balance", "transfers",
"reversals"; each fault applies to the next ``count`` calls that reach the endpoint (a
replay of a saved answer, a 409, a 429 or a 401 does not reach it):

* ``fail_next(endpoint, status, count=1, message="")`` -- answer ``status`` without
  doing anything: a 5xx is Stripe failing during execution (nothing is created, the
  5xx is saved for the key); any other status is not saved; ``"timeout"`` hangs and
  ``"drop"`` closes the connection without an HTTP answer (nothing saved).
* ``fail_after_create(endpoint, status=500, count=1)`` -- do the work, then: an HTTP
  status is saved as the key's result (a retry with that key gets it back, forever);
  ``"timeout"`` saves the success and never answers; ``"drop"`` saves the success and
  closes the connection without an answer.
* ``delay(endpoint, seconds, count=1)`` -- do the work, save the success, then hold
  the answer (the key is no longer in flight during the hold).
* ``set_latency(seconds)`` -- hold every API request that long *while executing* (its
  idempotency key is in flight meanwhile), without holding the fake's lock.
* ``set_rate_limit(per_second)`` -- None turns it off.
* ``set_clock(timestamp)`` -- freeze the clock (None: real time again);
  ``advance_clock(seconds)`` -- move it (a frozen clock stays frozen, else real time
  plus the offset).
* ``set_balance(currency, amount)`` -- the platform's available amount.
* ``create_account(payouts_enabled=True, **fields)``, ``set_payouts_enabled(acct,
  enabled)`` (payouts, charges, details_submitted and the transfers capability
  together), ``set_capability(acct, name, status)`` (active/inactive/pending),
  ``set_platform_country(country)``.
* ``set_link_ttl(seconds)``, ``expire_links()`` -- every open link expires now.
* ``reverse_transfer(transfer_id, amount=None)``, ``reset()`` (everything, including
  the knobs above, back to the start).

Events: ``on_event`` (None unless set, as in the tests) is called with an event type
and a copy of the object whenever an account changes (``account.updated``: onboarding
completed, ``set_payouts_enabled``, ``set_capability``) or a transfer is reversed
(``transfer.reversed``), as Stripe would send a webhook. It is called under the fake's
lock: it must hand the event on (``royalties dev stripe`` queues it for delivery), never
call the fake back.

Snapshots: ``transfers`` (oldest first), ``accounts`` (by id), ``requests`` (method,
path, key, params, status), ``balance`` ({currency: available}), ``account_links``.
"""

from __future__ import annotations

import argparse
import collections
import copy
import hashlib
import hmac
import html
import json
import operator
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Json = dict[str, Any]
_RESOURCES = re.compile(
    r"^/v1/(accounts|account_links|transfers|balance)(?:/([^/]+))?(?:/(reversals))?$"
)
_LINK_PATH = re.compile(r"^/connect/link/([^/]+)(/complete)?$")
_CONTROLS = frozenset(
    "fail_next fail_after_create delay set_payouts_enabled set_clock advance_clock "
    "create_account reverse_transfer reset set_balance set_capability set_link_ttl "
    "expire_links set_rate_limit set_latency set_platform_country".split()
)
_STATE = ("transfers", "accounts", "requests", "balance", "account_links")
_OPS = dict(gt=operator.gt, gte=operator.ge, lt=operator.lt, lte=operator.le, eq=operator.eq)
_ERROR_TYPES = {402: "card_error", 429: "invalid_request_error"}
_KEY_LIFETIME = 24 * 60 * 60  # Stripe may prune a key once it is at least 24 hours old
_MAX_KEY_LENGTH = 255
_CAPABILITY_STATUSES = ("active", "inactive", "pending")
_LINK_TYPES = ("account_onboarding", "account_update")
_HOME_CURRENCY = {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "JP": "jpy", "FR": "eur"}
_HOME_CURRENCY.update(dict.fromkeys(("DE", "ES", "IT", "NL", "BE", "IE", "AT", "PT"), "eur"))
_DEFAULT_BALANCE = dict.fromkeys(("usd", "eur", "gbp", "cad", "aud", "jpy"), 10**12)

# The currency codes Stripe's API accepts, in the order it lists them in its own
# "Invalid currency: ... Stripe currently supports these currencies: ..." error
# (captured from a test-mode response of 2024-10), plus xcg (Caribbean guilder, listed
# on docs.stripe.com/currencies since 2025).
SUPPORTED_CURRENCIES = (
    "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl "
    "bsd bwp byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd "
    "fkp gbp gel gip gmd gnf gtq gyd hkd hnl hrk htg huf idr ils inr isk jmd jod jpy kes "
    "kgs khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr "
    "mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd "
    "rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs "
    "uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw usdc btn ghs eek lvl svc vef "
    "ltl sll mro xcg"
).split()
_CURRENCY_SET = frozenset(SUPPORTED_CURRENCIES)

_IN_USE = (
    "There is currently another in-progress request using this Idempotent Key (that "
    "probably means you submitted twice, and the other request is still going through): "
    "{key}. Please try again later."
)
_RATE_LIMITED = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)
_INSUFFICIENT_BALANCE = (
    "You have insufficient available funds in your Stripe account. Try adding funds "
    "directly to your available balance by creating Charges using the 4000000000000077 "
    "test card. See: https://stripe.com/docs/testing#available-balance"
)
_NO_TRANSFERS_CAPABILITY = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)
_CROSS_BORDER = (
    "Funds can't be sent to accounts located in {country} because it's restricted "
    "outside of your platform's region."
)
_ONBOARDING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Stripe onboarding</title></head>
<body>
<h1>Stripe onboarding</h1>
<p>Account {account}</p>
<form method="post" action="/connect/link/{link}/complete">
<button type="submit">Agree and submit</button>
</form>
<p><a href="{return_url}">Return to the platform</a></p>
</body></html>
"""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Build a valid ``Stripe-Signature`` header for ``payload``."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def make_event(type: str, obj: Json, *, created: int | None = None) -> bytes:
    """A snapshot webhook event as Stripe would POST it, with a fresh ``evt_`` id."""
    event = {
        "id": new_id("evt"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


def parse_form(pairs: list[tuple[str, str]]) -> Json:
    """Turn ``metadata[fan_id]=x`` style pairs into nested dicts."""
    out: Json = {}
    for key, value in pairs:
        parts = [key.split("[", 1)[0], *re.findall(r"\[([^\]]*)\]", key)]
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # "a=1&a[b]=2": the later, nested one wins
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


class StripeFailure(Exception):
    """An error answer. ``saved``: the endpoint had started executing, so the answer is
    the idempotency key's result (state-dependent execution errors); validation errors
    on the parameters' shape are not saved."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        saved: bool = False,
        error_type: str | None = None,
        **extra: Any,
    ):
        super().__init__(message)
        kind = error_type or _ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        error: Json = {"type": kind, "message": message}
        if code:
            error["code"] = code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        error.update(extra)
        self.status = status
        self.saved = saved
        self.body = {"error": error}


@dataclass
class _Fault:
    status: int | str
    count: int
    message: str = "Injected failure from FakeStripe"
    after_create: bool = False
    seconds: float = 0.0
    code: str | None = None


@dataclass
class _Response:
    status: int = 200
    body: Json = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0  # seconds to wait before answering
    hang: bool = False  # never answer: the client times out
    drop: bool = False  # close the connection without any HTTP answer
    html: str | None = None  # a browser page instead of JSON


@dataclass
class _Slot:
    """One idempotency key: in flight while ``response`` is None, then its saved result."""

    path: str
    fingerprint: str
    first_used: int
    request_id: str
    response: _Response | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen() backlog: a benchmark opens 100+ at once
    allow_reuse_address = True


class FakeStripe:
    """The fake's state and controls; also the HTTP server while started."""

    sign_payload = staticmethod(sign_payload)
    make_event = staticmethod(make_event)

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        hang_seconds: float = 30.0,
        platform_country: str = "US",
    ):
        self.hang_seconds = hang_seconds
        self.on_event: Callable[[str, Json], None] | None = None  # survives reset()
        self._default_country = platform_country.upper()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None
        self.reset()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> FakeStripe:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes held and hanging responses
        if self._thread is not None:  # shutdown() would wait forever on a server never run
            self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:  # kept-alive connections die with the server
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeStripe:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls -------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self._accounts: dict[str, Json] = {}
            self._transfers: list[Json] = []
            self._requests: list[Json] = []
            self._links: dict[str, Json] = {}
            self._idempotent: collections.OrderedDict[tuple[str, str], _Slot] = (
                collections.OrderedDict()
            )
            self._faults: dict[str, list[_Fault]] = {}
            self._balance: dict[str, int] = dict(_DEFAULT_BALANCE)
            self._clock: int | None = None
            self._clock_offset = 0.0
            self._latency = 0.0
            self._rate_limit: int | None = None
            self._hits: dict[str, collections.deque[float]] = {
                "read": collections.deque(),
                "write": collections.deque(),
            }
            self._link_ttl = 300
            self.platform_country = self._default_country

    def fail_next(
        self,
        endpoint: str,
        status: int | str,
        count: int = 1,
        message: str = "",
        code: str | None = None,
    ) -> None:
        """``endpoint``: a resource ("transfers"), or one method of it ("GET transfers":
        the list and retrieve calls only). ``code``: the error code to answer with."""
        fault = _Fault(status, count, message or f"Injected {status} from FakeStripe", code=code)
        self._add_fault(endpoint, fault)

    def fail_after_create(self, endpoint: str, status: int | str = 500, count: int = 1) -> None:
        self._add_fault(endpoint, _Fault(status, count, after_create=True))

    def delay(self, endpoint: str, seconds: float, count: int = 1) -> None:
        self._add_fault(endpoint, _Fault(200, count, after_create=True, seconds=seconds))

    def set_clock(self, timestamp: int | None) -> None:
        """Freeze the clock at ``timestamp`` (None: real time again)."""
        with self._lock:
            self._clock = None if timestamp is None else int(timestamp)
            self._clock_offset = 0.0

    def advance_clock(self, seconds: float) -> int:
        """Move the clock forward (a frozen clock stays frozen); returns the new now."""
        with self._lock:
            if self._clock is not None:
                self._clock += int(seconds)
            else:
                self._clock_offset += seconds
            return self._now()

    def set_balance(self, currency: str, amount: int) -> Json:
        """Set the platform's available balance in ``currency`` (minor units)."""
        with self._lock:
            self._balance[currency.lower()] = int(amount)
            return dict(self._balance)

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = max(0.0, float(seconds))

    def set_rate_limit(self, per_second: int | None) -> None:
        """Reads and writes each allowed ``per_second`` in any rolling second (None: off)."""
        with self._lock:
            self._rate_limit = None if per_second is None else int(per_second)
            for hits in self._hits.values():
                hits.clear()

    def set_link_ttl(self, seconds: int) -> None:
        with self._lock:
            self._link_ttl = int(seconds)

    def expire_links(self) -> int:
        """Every link not visited yet expires now; returns how many."""
        with self._lock:
            now, expired = self._now(), 0
            for link in self._links.values():
                if not link["visited"] and link["expires_at"] > now:
                    link["expires_at"] = now
                    expired += 1
            return expired

    def set_platform_country(self, country: str) -> None:
        with self._lock:
            self.platform_country = country.upper()

    def set_payouts_enabled(self, account_id: str, enabled: bool) -> Json:
        with self._lock:
            account = self._accounts[account_id]
            account.update(payouts_enabled=enabled, charges_enabled=enabled)
            account["details_submitted"] = account["details_submitted"] or enabled
            account["capabilities"]["transfers"] = "active" if enabled else "inactive"
            account["requirements"] = _requirements(due=not enabled)
            self._emit("account.updated", account)
            return copy.deepcopy(account)

    def set_capability(self, account_id: str, name: str, status: str) -> Json:
        """Set one capability (e.g. ``transfers``) without touching ``payouts_enabled``."""
        if status not in _CAPABILITY_STATUSES:
            raise ValueError(f"capability status must be one of {_CAPABILITY_STATUSES}")
        with self._lock:
            account = self._accounts[account_id]
            account["capabilities"][name] = status
            self._emit("account.updated", account)
            return copy.deepcopy(account)

    def create_account(self, payouts_enabled: bool = True, **fields: Any) -> Json:
        """Seed a connected account directly (no HTTP), onboarded by default."""
        with self._lock:
            account = self._new_account({"type": "express", **fields})
            return self.set_payouts_enabled(account["id"], payouts_enabled)

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> Json:
        params = {} if amount is None else {"amount": str(amount)}
        with self._lock:
            return self._reverse(transfer_id, params)

    def _emit(self, kind: str, obj: Json) -> None:
        if self.on_event is not None:
            self.on_event(kind, copy.deepcopy(obj))

    def _snapshot(self, name: str) -> Any:
        with self._lock:
            return copy.deepcopy(getattr(self, f"_{name}"))

    transfers = property(lambda self: self._snapshot("transfers"), doc="Oldest first.")
    accounts = property(lambda self: self._snapshot("accounts"), doc="Accounts by id.")
    requests = property(
        lambda self: self._snapshot("requests"), doc="method/path/key/params/status log."
    )
    balance = property(lambda self: self._snapshot("balance"), doc="{currency: available}.")
    account_links = property(lambda self: self._snapshot("links"), doc="Links by id.")

    def _add_fault(self, endpoint: str, fault: _Fault) -> None:
        if isinstance(fault.status, str) and fault.status not in ("timeout", "drop"):
            raise ValueError(f"fault status must be an HTTP status, timeout or drop: {fault}")
        with self._lock:
            self._faults.setdefault(endpoint, []).append(fault)

    def _take_fault(self, endpoint: str, method: str, *, after_create: bool) -> _Fault | None:
        for name in (f"{method} {endpoint}", endpoint):  # one method's faults first
            for fault in self._faults.get(name, []):
                if fault.after_create == after_create:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults[name].remove(fault)
                    return fault
        return None

    def _now(self) -> int:
        return int(time.time() + self._clock_offset) if self._clock is None else self._clock

    # -- HTTP dispatch ----------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Any, body: bytes) -> _Response:
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if path.startswith("/_fake/"):
            return self._control(method, path.removeprefix("/_fake/"), body)
        if path.startswith(("/connect/link/", "/onboarding/")):
            with self._lock:
                return self._browser(method, path)
        form = url.query if method in ("GET", "DELETE") else body.decode("utf-8", "replace")
        params = parse_form(parse_qsl(form, keep_blank_values=True))
        key = headers.get("Idempotency-Key")
        entry = {
            "method": method,
            "path": path,
            "idempotency_key": key,
            "params": params,
            "status": None,  # filled in below: the key exists from the start, for snapshots
        }
        with self._lock:
            self._requests.append(entry)
            response, slot = self._admit(method, path, params, key, headers)
        if response is None:
            if self._latency:
                self._stopping.wait(self._latency)  # executing: the key stays in flight
            with self._lock:
                response = self._execute(method, path, params, key, headers, slot)
        status = "timeout" if response.hang else "drop" if response.drop else response.status
        with self._lock:
            entry["status"] = status
        return response

    def _admit(
        self, method: str, path: str, params: Json, key: str | None, headers: Any
    ) -> tuple[_Response | None, _Slot | None]:
        """Rate limit, authentication, routing, idempotency: the answers given before an
        endpoint starts executing. Nothing here is saved for the key."""
        try:
            self._check_rate(method)
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                raise StripeFailure(401, "You did not provide an API key.")
            if not auth.removeprefix("Bearer ").startswith(("sk_test_", "rk_test_")):
                raise StripeFailure(401, "Invalid API Key provided.", "api_key_invalid")
            if _RESOURCES.match(path) is None:
                raise StripeFailure(404, f"Unrecognized request URL ({method}: {path}).")
            if method != "POST" or not key:
                return None, None  # GET and DELETE ignore Idempotency-Key, as Stripe does
            return self._claim_key(path, params, key, headers.get("Stripe-Account") or "")
        except StripeFailure as failure:
            return _Response(failure.status, failure.body), None

    def _check_rate(self, method: str) -> None:
        if self._rate_limit is None:
            return
        hits = self._hits["read" if method == "GET" else "write"]
        now = time.monotonic()
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= self._rate_limit:
            raise StripeFailure(429, _RATE_LIMITED, "rate_limit")
        hits.append(now)

    def _claim_key(
        self, path: str, params: Json, key: str, scope: str
    ) -> tuple[_Response | None, _Slot | None]:
        if len(key) > _MAX_KEY_LENGTH:
            raise StripeFailure(
                400,
                f"Invalid idempotency key: must be at most {_MAX_KEY_LENGTH} characters "
                f"long, got {len(key)}.",
                "parameter_invalid",
            )
        now = self._now()
        self._prune(now)
        fingerprint = json.dumps(params, sort_keys=True)
        slot = self._idempotent.get((scope, key))
        if (
            slot is not None
            and slot.response is not None
            and now - slot.first_used >= (_KEY_LIFETIME)
        ):
            del self._idempotent[(scope, key)]  # pruned: the request runs as a new one
            slot = None
        if slot is None:
            slot = _Slot(path, fingerprint, now, new_id("req"))
            self._idempotent[(scope, key)] = slot
            return None, slot
        if slot.response is None:
            raise StripeFailure(409, _IN_USE.format(key=key), "idempotency_key_in_use")
        if slot.path != path:
            raise StripeFailure(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{path}' vs '{slot.path}'). Try using a key other "
                f"than '{key}' if you meant to execute a different request.",
                error_type="idempotency_error",
            )
        if slot.fingerprint != fingerprint:
            raise StripeFailure(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                "meant to execute a different request.",
                error_type="idempotency_error",
            )
        replay = copy.deepcopy(slot.response)
        replay.headers.pop("Request-Id", None)  # a replay is a request of its own
        replay.headers["Idempotent-Replayed"] = "true"
        replay.headers["Original-Request"] = slot.request_id
        replay.hold = 0.0
        return replay, None

    def _prune(self, now: int) -> None:
        """Forget answered keys at least a day old (oldest first; lookups re-check)."""
        while self._idempotent:
            scope_key, slot = next(iter(self._idempotent.items()))
            if slot.response is None or now - slot.first_used < _KEY_LIFETIME:
                return
            del self._idempotent[scope_key]

    def _execute(
        self,
        method: str,
        path: str,
        params: Json,
        key: str | None,
        headers: Any,
        slot: _Slot | None,
    ) -> _Response:
        match = _RESOURCES.match(path)
        assert match is not None
        resource, object_id, sub = match.groups()
        endpoint = sub or resource
        saved: _Response | None = None
        try:
            fault = self._take_fault(endpoint, method, after_create=False)
            if fault is not None:
                response = self._fault_response(fault)
                if isinstance(fault.status, int) and fault.status >= 500:
                    saved = response  # Stripe failed while executing: nothing made, 5xx kept
                return response
            try:
                response = _Response(body=self._route(method, resource, object_id, sub, params))
            except StripeFailure as failure:
                response = _Response(failure.status, failure.body)
                saved = response if failure.saved else None
                return response
            except KeyError as missing:
                unnamed = StripeFailure(
                    400, f"Missing required param: {missing.args[0]}.", "parameter_missing"
                )
                return _Response(unnamed.status, unnamed.body)
            if method != "POST":
                return response
            response.headers["Idempotency-Key"] = key or ""
            saved = response
            fault = self._take_fault(endpoint, method, after_create=True)
            if fault is None:
                return response
            if fault.seconds:
                response.hold = fault.seconds  # saved already: the key is done, the answer waits
                return response
            if fault.status in ("timeout", "drop"):
                return _Response(hang=fault.status == "timeout", drop=fault.status == "drop")
            saved = self._fault_response(fault)  # the work is done, the error is the result
            return saved
        finally:
            if slot is not None:
                if saved is not None:
                    saved.headers.setdefault("Request-Id", slot.request_id)
                self._settle(slot, saved)

    def _settle(self, slot: _Slot, response: _Response | None) -> None:
        if response is None:  # not saved: the key is free again, a retry runs anew
            for scope_key, other in list(self._idempotent.items()):
                if other is slot:
                    del self._idempotent[scope_key]
            return
        slot.response = copy.deepcopy(response)
        slot.response.hold = 0.0

    def _fault_response(self, fault: _Fault) -> _Response:
        if fault.status in ("timeout", "drop"):
            return _Response(hang=fault.status == "timeout", drop=fault.status == "drop")
        status = int(fault.status)
        code = fault.code or ("rate_limit" if status == 429 else None)
        failure = StripeFailure(status, fault.message, code)
        return _Response(failure.status, failure.body)

    def _route(self, method: str, resource: str, oid: str | None, sub: str | None, p: Json) -> Json:
        if resource == "accounts" and method == "POST" and oid is None:
            return self._new_account(p)
        if resource == "accounts" and method == "GET" and oid:
            return self._get(self._accounts.get(oid), "account", oid)
        if resource == "accounts" and method == "GET":
            return self._page(sorted(self._accounts.values(), key=_newest), p, "accounts")
        if resource == "account_links" and method == "POST" and oid is None:
            return self._new_link(p)
        if resource == "balance" and method == "GET" and oid is None:
            return self._balance_object()
        if resource == "transfers" and oid is None:
            return self._new_transfer(p) if method == "POST" else self._list_transfers(p)
        if resource == "transfers" and sub and method == "POST":
            return self._reverse(str(oid), p)
        if resource == "transfers" and method == "GET" and not sub:
            return self._get(self._find_transfer(str(oid)), "transfer", str(oid))
        raise StripeFailure(404, f"Unrecognized request URL ({method}: /v1/{resource}).")

    @staticmethod
    def _get(obj: Json | None, kind: str, oid: str, param: str = "id") -> Json:
        if obj is None:
            raise StripeFailure(
                404, f"No such {kind}: '{oid}'", "resource_missing", saved=True, param=param
            )
        return copy.deepcopy(obj)

    def _find_transfer(self, transfer_id: str) -> Json | None:
        return next((t for t in self._transfers if t["id"] == transfer_id), None)

    # -- resources --------------------------------------------------------------------
    def _new_account(self, p: Json) -> Json:
        if p.get("type") not in ("express", "standard", "custom"):
            raise StripeFailure(400, "Invalid account type.", "parameter_invalid", param="type")
        country = str(p.get("country") or self.platform_country).upper()
        if not re.fullmatch(r"[A-Z]{2}", country):
            raise StripeFailure(
                400,
                f"Country '{p.get('country')}' is unknown. Try using a 2-character "
                "alphanumeric country code instead, such as 'US', 'EG', or 'GB'.",
                "parameter_invalid",
                param="country",
            )
        tos = p.get("tos_acceptance") or {}
        agreement = tos.get("service_agreement", "full") if isinstance(tos, dict) else None
        if agreement not in ("full", "recipient"):
            raise StripeFailure(
                400,
                "Invalid tos_acceptance[service_agreement]: must be one of full or recipient",
                "parameter_invalid",
                param="tos_acceptance[service_agreement]",
            )
        capabilities = p.get("capabilities") or {}
        requested = [
            c for c, v in capabilities.items() if isinstance(v, dict) and v.get("requested")
        ]
        if agreement == "recipient" and "card_payments" in requested:
            raise StripeFailure(
                400,
                "Accounts under the recipient service agreement can't request the "
                "card_payments capability.",
                "parameter_invalid",
                param="capabilities",
            )
        account = {
            "id": new_id("acct"),
            "object": "account",
            "type": p["type"],
            "email": p.get("email"),
            "country": country,
            "default_currency": _HOME_CURRENCY.get(country),
            "created": self._now(),
            "livemode": False,
            "metadata": p.get("metadata", {}),
            "capabilities": {c: "inactive" for c in requested},
            "tos_acceptance": {
                "date": None,
                "ip": None,
                "user_agent": None,
                "service_agreement": agreement,
            },
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
            # What Stripe asks of an Express account that has not been onboarded yet.
            "requirements": _requirements(due=True),
        }
        self._accounts[account["id"]] = account
        return copy.deepcopy(account)

    def _new_link(self, p: Json) -> Json:
        for name in ("account", "type", "refresh_url", "return_url"):
            if not p.get(name):
                raise StripeFailure(
                    400, f"Missing required param: {name}.", "parameter_missing", param=name
                )
        if p["type"] not in _LINK_TYPES:
            raise StripeFailure(
                400,
                f"Invalid type: must be one of {' or '.join(_LINK_TYPES)}",
                "parameter_invalid",
                param="type",
            )
        for name in ("refresh_url", "return_url"):
            parts = urlsplit(str(p[name]))
            if parts.scheme not in ("http", "https") or not parts.netloc:  # test mode: http ok
                raise StripeFailure(400, "Not a valid URL", "url_invalid", param=name)
        account = self._get(self._accounts.get(p["account"]), "account", p["account"], "account")
        link_id = new_id("al")
        now = self._now()
        self._links[link_id] = {
            "id": link_id,
            "account": account["id"],
            "type": p["type"],
            "refresh_url": p["refresh_url"],
            "return_url": p["return_url"],
            "created": now,
            "expires_at": now + self._link_ttl,
            "visited": False,
            "completed": False,
        }
        return {
            "object": "account_link",
            "created": now,
            "expires_at": now + self._link_ttl,
            "url": f"{self.url}/connect/link/{link_id}",
        }

    def _balance_object(self) -> Json:
        currencies = sorted(self._balance)
        return {
            "object": "balance",
            "available": [{"amount": self._balance[c], "currency": c} for c in currencies],
            "pending": [{"amount": 0, "currency": c} for c in currencies],
            "livemode": False,
        }

    def _new_transfer(self, p: Json) -> Json:
        amount = _positive_int(p.get("amount"), "amount", required=True)
        if not p.get("currency"):
            raise StripeFailure(
                400, "Missing required param: currency.", "parameter_missing", param="currency"
            )
        currency = str(p["currency"]).lower()
        if currency not in _CURRENCY_SET:
            raise StripeFailure(
                400,
                f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                + ", ".join(SUPPORTED_CURRENCIES),
                param="currency",
            )
        dest = p.get("destination")
        if not dest:
            raise StripeFailure(
                400,
                "Missing required param: destination.",
                "parameter_missing",
                param="destination",
            )
        # From here on the endpoint is executing: what depends on state is saved.
        account = self._accounts.get(dest)
        if account is None:
            raise StripeFailure(
                400,
                f"No such destination: '{dest}'",
                "resource_missing",
                saved=True,
                param="destination",
            )
        if account["capabilities"].get("transfers") != "active":
            raise StripeFailure(
                400, _NO_TRANSFERS_CAPABILITY, "insufficient_capabilities_for_transfer", saved=True
            )
        agreement = account["tos_acceptance"]["service_agreement"]
        if account["country"] != self.platform_country and agreement != "recipient":
            raise StripeFailure(
                400,
                _CROSS_BORDER.format(country=account["country"]),
                "transfers_not_allowed",
                saved=True,
            )
        if self._balance.get(currency, 0) < amount:
            raise StripeFailure(400, _INSUFFICIENT_BALANCE, "balance_insufficient", saved=True)
        self._balance[currency] = self._balance.get(currency, 0) - amount
        tid = new_id("tr")
        transfer = {
            "id": tid,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": self._now(),
            "currency": currency,
            "description": p.get("description"),
            "destination": dest,
            "livemode": False,
            "metadata": p.get("metadata", {}),
            "reversals": _list([], f"/v1/transfers/{tid}/reversals", has_more=False),
            "reversed": False,
            "transfer_group": p.get("transfer_group"),
        }
        self._transfers.append(transfer)
        return copy.deepcopy(transfer)

    def _list_transfers(self, p: Json) -> Json:
        items = sorted(
            enumerate(self._transfers), key=lambda it: (it[1]["created"], it[0]), reverse=True
        )
        rows = [t for _, t in items if _matches(t, p)]
        return self._page(rows, p, "transfers")

    def _page(self, rows: list[Json], p: Json, what: str) -> Json:
        """One page of a list, newest first: ``limit`` 1..100, ``created`` bounds, and
        ``starting_after`` / ``ending_before`` cursors, as every Stripe list takes."""
        limit = _int_param(p.get("limit", "10"), "limit")
        if not 1 <= limit <= 100:
            raise StripeFailure(
                400,
                f"Invalid limit: must be between 1 and 100 (got {limit}).",
                "parameter_invalid_integer",
                param="limit",
            )
        if "starting_after" in p and "ending_before" in p:
            raise StripeFailure(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                "parameters_exclusive",
            )
        created = p.get("created", {})
        bounds = created if isinstance(created, dict) else {"eq": created}
        bounds = {op: _int_param(v, f"created[{op}]") for op, v in bounds.items() if op in _OPS}
        rows = [r for r in rows if all(_OPS[op](r["created"], v) for op, v in bounds.items())]
        ids = [r["id"] for r in rows]
        known = self._transfers if what == "transfers" else self._accounts.values()
        kind = what.removesuffix("s")
        for cursor in ("starting_after", "ending_before"):
            if cursor in p and not any(r["id"] == p[cursor] for r in known):
                raise StripeFailure(
                    400, f"No such {kind}: '{p[cursor]}'", "resource_missing", param=cursor
                )
        if "ending_before" in p:  # the page just newer than the cursor, still newest first
            before = rows[: ids.index(p["ending_before"])] if p["ending_before"] in ids else []
            page = before[-limit:]
            has_more = len(before) > len(page)
        else:
            if "starting_after" in p and p["starting_after"] in ids:
                rows = rows[ids.index(p["starting_after"]) + 1 :]
            page = rows[:limit]
            has_more = len(rows) > len(page)
        return _list(copy.deepcopy(page), f"/v1/{what}", has_more=has_more)

    def _reverse(self, transfer_id: str, p: Json) -> Json:
        amount_param = p.get("amount")
        if amount_param is not None:
            _positive_int(amount_param, "amount")
        transfer = self._find_transfer(transfer_id)
        self._get(transfer, "transfer", transfer_id)
        assert transfer is not None
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = left if amount_param is None else int(amount_param)
        if amount > left or amount <= 0:
            raise StripeFailure(
                400,
                "Amount exceeds the transfer's unreversed amount.",
                "parameter_invalid_integer",
                saved=True,
                param="amount",
            )
        reversal = {
            "id": new_id("trr"),
            "object": "transfer_reversal",
            "amount": amount,
            "currency": transfer["currency"],
            "created": self._now(),
            "metadata": p.get("metadata", {}),
            "transfer": transfer_id,
        }
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        transfer["reversals"]["data"].insert(0, reversal)
        currency = transfer["currency"]
        self._balance[currency] = self._balance.get(currency, 0) + amount
        self._emit("transfer.reversed", transfer)
        return copy.deepcopy(reversal)

    # -- the browser side of Connect onboarding ------------------------------------------
    def _browser(self, method: str, path: str) -> _Response:
        if path.startswith("/onboarding/"):  # the old shortcut: a GET completes onboarding
            account_id = path.rsplit("/", 1)[1]
            if method != "GET" or account_id not in self._accounts:
                return _Response(404, StripeFailure(404, "No such account").body)
            return _Response(body=self.set_payouts_enabled(account_id, True))
        match = _LINK_PATH.match(path)
        link = self._links.get(match.group(1)) if match else None
        if match is None or link is None:
            return _Response(404, html="<!doctype html><p>This link is invalid.</p>\n")
        if match.group(2):  # the form's submit: onboarding done, back to the platform
            if method != "POST":
                return _Response(405, html="<!doctype html><p>Method not allowed.</p>\n")
            if not link["visited"]:
                return _redirect(link["refresh_url"])
            if not link["completed"]:
                link["completed"] = True
                self.set_payouts_enabled(link["account"], True)
            return _redirect(link["return_url"])
        if method != "GET":
            return _Response(405, html="<!doctype html><p>Method not allowed.</p>\n")
        if link["visited"] or self._now() >= link["expires_at"]:
            return _redirect(link["refresh_url"])
        link["visited"] = True
        page = _ONBOARDING_PAGE.format(
            account=html.escape(link["account"]),
            link=html.escape(link["id"]),
            return_url=html.escape(link["return_url"], quote=True),
        )
        return _Response(html=page)

    # -- control over HTTP --------------------------------------------------------------
    def _control(self, method: str, name: str, body: bytes) -> _Response:
        try:
            if method == "GET" and name in _STATE:
                return _Response(body={"result": getattr(self, name)})
            if method == "POST" and name in _CONTROLS:
                return _Response(body={"result": getattr(self, name)(**json.loads(body or b"{}"))})
        except (KeyError, TypeError, ValueError, StripeFailure) as exc:
            return _Response(400, {"error": {"message": f"{name}: {exc!r}"}})
        return _Response(404, {"error": {"message": f"no control {method} {name}"}})


def _redirect(location: str) -> _Response:
    return _Response(302, headers={"Location": location}, html="")


def _int_param(value: Any, param: str) -> int:
    if not re.fullmatch(r"-?\d+", str(value)):
        raise StripeFailure(
            400, f"Invalid integer: {value}", "parameter_invalid_integer", param=param
        )
    return int(value)


def _positive_int(value: Any, param: str, required: bool = False) -> int:
    if value is None and required:
        raise StripeFailure(
            400, f"Missing required param: {param}.", "parameter_missing", param=param
        )
    if not re.fullmatch(r"\d+", str(value)) or int(value) <= 0:
        raise StripeFailure(
            400, f"Invalid integer: {value}", "parameter_invalid_integer", param=param
        )
    return int(value)


_DUE_BEFORE_ONBOARDING = (
    "business_type",
    "external_account",
    "individual.dob.day",
    "individual.first_name",
    "individual.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
)


def _requirements(*, due: bool) -> Json:
    """An account's ``requirements`` hash: what Stripe still needs, and why it is off."""
    fields = list(_DUE_BEFORE_ONBOARDING) if due else []
    return {
        "currently_due": fields,
        "eventually_due": list(fields),
        "past_due": list(fields),
        "pending_verification": [],
        "disabled_reason": "requirements.past_due" if due else None,
        "current_deadline": None,
    }


def _newest(obj: Json) -> tuple[int, str]:
    return (-obj["created"], obj["id"])


def _matches(transfer: Json, p: Json) -> bool:
    return all(transfer[name] == p[name] for name in ("destination", "transfer_group") if name in p)


def _list(data: list[Json], url: str, *, has_more: bool) -> Json:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeStripe/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, as api.stripe.com: fewer connects per call

    def setup(self) -> None:
        super().setup()
        with suppress(OSError):  # no Nagle wait between an answer's headers and body
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        with fake._lock:
            fake._connections.add(self.connection)

    def finish(self) -> None:
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        with fake._lock:
            fake._connections.discard(self.connection)
        with suppress(OSError):
            super().finish()

    def _serve(self) -> None:
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        response = fake.handle(self.command, self.path, self.headers, body)
        if response.drop:  # no HTTP answer at all: the client sees the connection close
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if response.hang:
            fake._stopping.wait(fake.hang_seconds)
            self.close_connection = True
            return
        if response.hold:
            fake._stopping.wait(response.hold)
        if response.html is not None:
            data, kind = response.html.encode(), "text/html; charset=utf-8"
        else:
            data, kind = json.dumps(response.body).encode(), "application/json"
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            if "Request-Id" not in response.headers:
                self.send_header("Request-Id", new_id("req"))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout) or was killed

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RemoteFake:
    """Steer a standalone fake (another process) through its ``/_fake`` control path."""

    def __init__(self, url: str, process: subprocess.Popen[str] | None = None) -> None:
        self.url = url
        self.process = process  # set by standalone(): e.g. to kill "Stripe" mid-test

    def _call(self, name: str, payload: Json | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(  # noqa: S310 - self.url is the fake's own http URL
            f"{self.url}/_fake/{name}", data=data, method="GET" if payload is None else "POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - as above
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"fake stripe control {name} failed: {exc.read()!r}") from exc

    def __getattr__(self, name: str) -> Any:
        if name in _STATE:
            return self._call(name)
        if name in _CONTROLS:
            return lambda *args, **kwargs: self._call(name, _kwargs(name, args, kwargs))
        raise AttributeError(name)


def _kwargs(name: str, args: tuple[Any, ...], kwargs: Json) -> Json:
    code = getattr(FakeStripe, name).__code__
    return {**dict(zip(code.co_varnames[1 : code.co_argcount], args, strict=False)), **kwargs}


@contextmanager
def standalone(port: int = 0, *, platform_country: str = "US") -> Iterator[RemoteFake]:
    """Run the fake as a child process; yields a :class:`RemoteFake` on its URL."""
    cmd = [sys.executable, "-m", "api.dev.fake_stripe", "--port", str(port)]
    cmd += ["--platform-country", platform_country]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root)  # noqa: S603
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"fake stripe did not start: {line!r}")
        yield RemoteFake(line.removeprefix("listening on "), proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake Stripe API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--platform-country", default="US")
    args = parser.parse_args(argv)
    fake = FakeStripe(
        args.host, args.port, hang_seconds=args.hang_seconds, platform_country=args.platform_country
    )
    print(f"listening on {fake.url}", flush=True)
    with suppress(KeyboardInterrupt):
        fake._server.serve_forever()


if __name__ == "__main__":
    main()
