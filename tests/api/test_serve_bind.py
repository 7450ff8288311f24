"""``royalties serve --bind HOST:PORT`` writes share links (and Stripe's return pages)
with that address when ``PUBLIC_BASE_URL`` is unset."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from api.config import base_url_for_bind
from tests.api.live import royalties_serve


def call(port: int, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_share_links_name_the_bound_address_when_public_base_url_is_unset(db_url):
    from royalties.db import make_engine, make_sessionmaker
    from royalties.services.accounts import create_admin_key

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        admin = create_admin_key(session)
    engine.dispose()
    with royalties_serve(db_url) as (port, env):
        assert "PUBLIC_BASE_URL" not in env
        artist = call(port, "/v1/artists", {"name": "Ada"}, admin)
        content = call(
            port,
            "/v1/content",
            {
                "title": "Song",
                "kind": "track",
                "price": 100,
                "currency": "usd",
                "storefront_url": "https://shop.example/song",
            },
            artist["api_key"],
        )
        fan = call(port, "/v1/fans", {"handle": "ann"})
        link = call(port, "/v1/share-links", {"content_id": content["id"]}, fan["api_key"])
    assert link["url"].startswith(f"http://127.0.0.1:{port}/l/")


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost:9000", "http://localhost:9000"),
        ("0.0.0.0:8080", "http://127.0.0.1:8080"),
        ("[::]:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("example.org", "http://example.org:8000"),  # gunicorn's port when none is named
        ("unix:/run/royalties.sock", None),
        ("fd://3", None),
    ],
)
def test_the_url_of_a_bind_uses_127_0_0_1_for_every_address(bind: str, url: str | None):
    assert base_url_for_bind(bind) == url
