"""The floor of the serving stack, for ``bench/purchases.py``: a Flask app under the same
gunicorn command as ``royalties serve`` whose ``POST /v1/purchases`` does nothing but
parse the JSON body and have the bare driver write the rows of one real purchase (the
benchmark's raw-SQL mirror), answering that purchase's stored response.

No key check, validation, idempotency lookup, attribution or ORM: no implementation of
the endpoint on Flask + gunicorn + this database can be faster on this machine, so its
rate bounds what the real endpoint can reach. Configured by the environment:
``BENCH_DB_URL`` and ``BENCH_PURCHASE_ID`` (the real purchase to copy).

``GET /l/<code>`` is the floor of a click: a bare Flask redirect to the storefront with
``ref=<code>``, recording nothing, so the real click path's rate is measured against
the cost of the serving stack itself.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from typing import Any

from flask import Flask, Response, redirect, request
from purchases import RawPurchase, attach  # bench/ is on gunicorn's --pythonpath

app = Flask(__name__)
_local = threading.local()  # a connection per thread (gunicorn's gthread workers)
_numbers = itertools.count(1)


def _mirror() -> tuple[RawPurchase, Any]:
    if not hasattr(_local, "conn"):  # after gunicorn's fork, in the serving thread
        mirror = RawPurchase(attach(os.environ["BENCH_DB_URL"]), os.environ["BENCH_PURCHASE_ID"])
        _local.mirror, _local.conn = mirror, mirror.db.connect()
        _local.prefix = secrets.token_hex(4)
    return _local.mirror, _local.conn


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/purchases")
def purchase() -> Response:
    request.get_json()  # the real endpoint parses its body too
    mirror, conn = _mirror()
    try:
        body = mirror.write_one(conn, f"{_local.prefix}f{next(_numbers):07d}")
    except Exception:
        conn.rollback()
        raise
    return Response(body, status=201, mimetype="application/json")


@app.get("/l/<code>")
def click(code: str) -> Any:
    return redirect(f"{os.environ.get('BENCH_STOREFRONT_URL', STOREFRONT)}?ref={code}", 302)


STOREFRONT = "https://shop.example/track"  # what bench/purchases.py's fixture sells
