"""A fake Stripe of our own: a real HTTP server on 127.0.0.1 that speaks enough of the
v1 API (accounts, account links, transfers, reversals) for the official SDK to talk to
it unchanged, plus knobs to make it fail the way the real one can.

Use it in-process (``with FakeStripe() as fake: StripeGateway("sk_test_x", fake.url)``)
or as a separate process that a test can SIGKILL around::

    python -m tests.fakes.fake_stripe --port 0     # prints "listening on http://127.0.0.1:N"

and steer it over HTTP with :class:`RemoteFake` (``POST /_fake/<control>`` with JSON
keyword arguments, ``GET /_fake/transfers|accounts|requests``).

What it imitates faithfully, because the exactly-once payout logic depends on it:

* ``Idempotency-Key`` on every POST: same key and same parameters replay the first
  successful response (same body, header ``Idempotent-Replayed: true``); same key with
  other parameters is a 400 ``idempotency_error``. Failed validations are not stored.
* A transfer needs a known destination whose ``transfers`` capability is active
  (``set_payouts_enabled(acct, True)``, or visit the onboarding link) -- else 400.
* Lists are newest first, paginated with ``limit`` / ``starting_after`` / ``has_more``.

Failure knobs (``endpoint`` is the resource: "accounts", "account_links",
"transfers", "reversals"; each applies to the next ``count`` calls):

* ``fail_next(endpoint, status)`` -- answer ``status`` (or hang for "timeout")
  *without* doing anything.
* ``fail_after_create(endpoint, status)`` -- do the work (and remember it for
  idempotent replay), then answer ``status`` or hang: the ambiguous failure.
* ``delay(endpoint, seconds)`` -- do the work, then hold the good answer.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import operator
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Json = dict[str, Any]
_RESOURCES = re.compile(r"^/v1/(accounts|account_links|transfers)(?:/([^/]+))?(?:/(reversals))?$")
_CONTROLS = frozenset(
    "fail_next fail_after_create delay set_payouts_enabled set_clock create_account "
    "reverse_transfer reset".split()
)
_STATE = ("transfers", "accounts", "requests")
_OPS = dict(gt=operator.gt, gte=operator.ge, lt=operator.lt, lte=operator.le, eq=operator.eq)
_ERROR_TYPES = {402: "card_error", 429: "invalid_request_error"}


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
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class StripeFailure(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.status = status
        self.body = {"error": {"type": kind, "message": message, "code": code, **extra}}


@dataclass
class _Fault:
    status: int | str
    count: int
    message: str = "Injected failure from FakeStripe"
    after_create: bool = False
    seconds: float = 0.0


@dataclass
class _Response:
    status: int = 200
    body: Json = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0  # seconds to wait before answering
    hang: bool = False  # never answer: the client times out


class FakeStripe:
    """The fake's state and controls; also the HTTP server while started."""

    sign_payload = staticmethod(sign_payload)
    make_event = staticmethod(make_event)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, hang_seconds: float = 30.0):
        self.hang_seconds = hang_seconds
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
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
            self._idempotent: dict[str, tuple[str, _Response]] = {}
            self._faults: dict[str, list[_Fault]] = {}
            self._clock: int | None = None

    def fail_next(
        self, endpoint: str, status: int | str, count: int = 1, message: str = ""
    ) -> None:
        fault = _Fault(status, count, message or f"Injected {status} from FakeStripe")
        self._add_fault(endpoint, fault)

    def fail_after_create(self, endpoint: str, status: int | str = 500, count: int = 1) -> None:
        self._add_fault(endpoint, _Fault(status, count, after_create=True))

    def delay(self, endpoint: str, seconds: float, count: int = 1) -> None:
        self._add_fault(endpoint, _Fault(200, count, after_create=True, seconds=seconds))

    def set_clock(self, timestamp: int | None) -> None:
        """Freeze ``created`` stamps at ``timestamp`` (None: real time again)."""
        with self._lock:
            self._clock = timestamp

    def set_payouts_enabled(self, account_id: str, enabled: bool) -> Json:
        with self._lock:
            account = self._accounts[account_id]
            account.update(payouts_enabled=enabled, charges_enabled=enabled)
            account["details_submitted"] = account["details_submitted"] or enabled
            account["capabilities"]["transfers"] = "active" if enabled else "inactive"
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

    def _snapshot(self, name: str) -> Any:
        with self._lock:
            return copy.deepcopy(getattr(self, f"_{name}"))

    transfers = property(lambda self: self._snapshot("transfers"), doc="Oldest first.")
    accounts = property(lambda self: self._snapshot("accounts"), doc="Accounts by id.")
    requests = property(lambda self: self._snapshot("requests"), doc="method/path/key/params log.")

    def _add_fault(self, endpoint: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(endpoint, []).append(fault)

    def _take_fault(self, endpoint: str, *, after_create: bool) -> _Fault | None:
        for fault in self._faults.get(endpoint, []):
            if fault.after_create == after_create:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults[endpoint].remove(fault)
                return fault
        return None

    def _now(self) -> int:
        return int(time.time()) if self._clock is None else self._clock

    # -- HTTP dispatch ----------------------------------------------------------------
    def handle(self, method: str, target: str, headers: Any, body: bytes) -> _Response:
        url = urlsplit(target)
        path = url.path.rstrip("/")
        if path.startswith("/_fake/"):
            return self._control(method, path.removeprefix("/_fake/"), body)
        if method == "GET" and path.startswith("/onboarding/"):  # "completes" onboarding
            account_id = path.rsplit("/", 1)[1]
            if account_id not in self.accounts:
                return _Response(404, StripeFailure(404, "No such account").body)
            return _Response(body=self.set_payouts_enabled(account_id, True))
        raw = parse_qsl(url.query if method == "GET" else body.decode(), keep_blank_values=True)
        params = parse_form(raw)
        key = headers.get("Idempotency-Key")
        with self._lock:
            self._requests.append(
                {"method": method, "path": path, "idempotency_key": key, "params": params}
            )
            try:
                return self._api(method, path, params, key, headers.get("Authorization", ""))
            except StripeFailure as failure:
                return _Response(failure.status, failure.body)
            except KeyError as missing:
                return _Response(400, StripeFailure(400, f"Missing {missing}").body)

    def _api(self, method: str, path: str, params: Json, key: str | None, auth: str) -> _Response:
        if not auth.startswith("Bearer "):
            raise StripeFailure(401, "You did not provide an API key.")
        if not auth.removeprefix("Bearer ").startswith(("sk_test_", "rk_test_")):
            raise StripeFailure(401, "Invalid API Key provided.", "api_key_invalid")
        match = _RESOURCES.match(path)
        if match is None:
            raise StripeFailure(404, f"Unrecognized request URL ({method}: {path}).")
        resource, object_id, sub = match.groups()
        endpoint = sub or resource
        fault = self._take_fault(endpoint, after_create=False)
        if fault is not None:
            return self._fault_response(fault)
        fingerprint = json.dumps([method, path, params], sort_keys=True)
        if method == "POST" and key and key in self._idempotent:
            first, response = self._idempotent[key]
            if first != fingerprint:
                message = "Keys for idempotent requests can only be used with the same parameters"
                raise StripeFailure(
                    400, f"{message} they were first used with.", type="idempotency_error"
                )
            replay = copy.deepcopy(response)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        response = _Response(body=self._route(method, resource, object_id, sub, params))
        if method == "POST":
            response.headers["Idempotency-Key"] = key or ""
            if key:
                self._idempotent[key] = (fingerprint, copy.deepcopy(response))
            fault = self._take_fault(endpoint, after_create=True)
            if fault is not None and fault.seconds:
                response.hold = fault.seconds
            elif fault is not None:
                return self._fault_response(fault)
        return response

    def _fault_response(self, fault: _Fault) -> _Response:
        if fault.status == "timeout":
            return _Response(hang=True)
        failure = StripeFailure(int(fault.status), fault.message)
        return _Response(failure.status, failure.body)

    def _route(self, method: str, resource: str, oid: str | None, sub: str | None, p: Json) -> Json:
        if resource == "accounts" and method == "POST" and oid is None:
            return self._new_account(p)
        if resource == "accounts" and method == "GET" and oid:
            return self._get(self._accounts.get(oid), "account", oid)
        if resource == "account_links" and method == "POST" and oid is None:
            account = self._get(self._accounts.get(p["account"]), "account", p["account"])
            return {
                "object": "account_link",
                "created": self._now(),
                "expires_at": self._now() + 300,
                "url": f"{self.url}/onboarding/{account['id']}",
            }
        if resource == "transfers" and oid is None:
            return self._new_transfer(p) if method == "POST" else self._list_transfers(p)
        if resource == "transfers" and sub and method == "POST":
            return self._reverse(str(oid), p)
        if resource == "transfers" and method == "GET" and not sub:
            return self._get(self._find_transfer(str(oid)), "transfer", str(oid))
        raise StripeFailure(404, f"Unrecognized request URL ({method}: /v1/{resource}).")

    @staticmethod
    def _get(obj: Json | None, kind: str, oid: str) -> Json:
        if obj is None:
            raise StripeFailure(404, f"No such {kind}: '{oid}'", "resource_missing", param="id")
        return copy.deepcopy(obj)

    def _find_transfer(self, transfer_id: str) -> Json | None:
        return next((t for t in self._transfers if t["id"] == transfer_id), None)

    # -- resources --------------------------------------------------------------------
    def _new_account(self, p: Json) -> Json:
        if p.get("type") not in ("express", "standard", "custom"):
            raise StripeFailure(400, "Invalid account type.", "parameter_invalid", param="type")
        requested = [c for c, v in p.get("capabilities", {}).items() if v.get("requested")]
        account = {
            "id": new_id("acct"),
            "object": "account",
            "type": p["type"],
            "email": p.get("email"),
            "country": p.get("country", "US"),
            "default_currency": "usd",
            "created": self._now(),
            "livemode": False,
            "metadata": p.get("metadata", {}),
            "capabilities": {c: "inactive" for c in requested},
            "charges_enabled": False,
            "payouts_enabled": False,
            "details_submitted": False,
        }
        self._accounts[account["id"]] = account
        return copy.deepcopy(account)

    def _new_transfer(self, p: Json) -> Json:
        amount = _positive_int(p.get("amount"), "amount", required=True)
        currency = str(p.get("currency", "")).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise StripeFailure(400, f"Invalid currency: {currency}", "invalid_currency")
        dest = p.get("destination", "")
        account = self._accounts.get(dest)
        if account is None:
            raise StripeFailure(
                400, f"No such destination: '{dest}'", "resource_missing", param="destination"
            )
        if account["capabilities"].get("transfers") != "active":
            message = "Your destination account needs to have the transfers capability enabled"
            raise StripeFailure(400, message, "insufficient_capabilities_for_transfer")
        tid = new_id("tr")
        transfer = {
            "id": tid,
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": self._now(),
            "currency": currency,
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
        limit = _positive_int(p.get("limit", "10"), "limit")
        if "starting_after" in p:
            ids = [t["id"] for t in rows]
            if p["starting_after"] not in ids:
                raise StripeFailure(400, "No such transfer", "resource_missing")
            rows = rows[ids.index(p["starting_after"]) + 1 :]
        page = rows[: min(limit, 100)]
        return _list(copy.deepcopy(page), "/v1/transfers", has_more=len(rows) > len(page))

    def _reverse(self, transfer_id: str, p: Json) -> Json:
        transfer = self._find_transfer(transfer_id)
        self._get(transfer, "transfer", transfer_id)
        assert transfer is not None
        left = transfer["amount"] - transfer["amount_reversed"]
        amount = _positive_int(p.get("amount", str(left)), "amount")
        if amount > left:
            raise StripeFailure(400, "Amount exceeds the transfer's unreversed amount.")
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
        return copy.deepcopy(reversal)

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


def _positive_int(value: Any, param: str, required: bool = False) -> int:
    if value is None and required:
        raise StripeFailure(400, f"Missing required param: {param}.", "parameter_missing")
    if not re.fullmatch(r"\d+", str(value)) or int(value) <= 0:
        raise StripeFailure(400, f"Invalid integer: {param}", "parameter_invalid_integer")
    return int(value)


def _matches(transfer: Json, p: Json) -> bool:
    for name in ("destination", "transfer_group"):
        if name in p and transfer[name] != p[name]:
            return False
    created = p.get("created", {})
    bounds = created if isinstance(created, dict) else {"eq": created}
    return all(_OPS[op](transfer["created"], int(v)) for op, v in bounds.items() if op in _OPS)


def _list(data: list[Json], url: str, *, has_more: bool) -> Json:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeStripe/1.0"

    def _serve(self) -> None:
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        response = fake.handle(self.command, self.path, self.headers, body)
        if response.hang:
            fake._stopping.wait(fake.hang_seconds)
            self.close_connection = True
            return
        if response.hold:
            fake._stopping.wait(response.hold)
        data = json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", new_id("req"))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) or was killed: as with the real Stripe

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
        req = urllib.request.Request(
            f"{self.url}/_fake/{name}", data=data, method="POST" if data else "GET"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
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
def standalone(port: int = 0) -> Iterator[RemoteFake]:
    """Run the fake as a child process; yields a :class:`RemoteFake` on its URL."""
    cmd = [sys.executable, "-m", "tests.fakes.fake_stripe", "--port", str(port)]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root)
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
    args = parser.parse_args(argv)
    fake = FakeStripe(args.host, args.port, hang_seconds=args.hang_seconds)
    print(f"listening on {fake.url}", flush=True)
    with suppress(KeyboardInterrupt):
        fake._server.serve_forever()


if __name__ == "__main__":
    main()
