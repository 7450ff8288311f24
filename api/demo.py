"""``royalties demo``: SPEC section 9 through the real API code, on a fresh SQLite file.

Everything goes through HTTP requests to the real application (in-process test client),
so the demo exercises the same code paths a storefront does: share link, click, sale,
two refunds, balances and a final ledger check. The storefront also registers a
webhook endpoint at a local receiver (``api/dev/receiver.py``), and the worker's own
fan-out and delivery code sends it the sale and the refunds, signed; the receiver
verifies each signature.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rich.console import Console
from rich.table import Table

from api.dev.receiver import LocalReceiver
from royalties import ledger
from royalties.db import make_engine, make_sessionmaker, utcnow
from royalties.migrate import upgrade
from royalties.services.accounts import create_admin_key


class DemoError(RuntimeError):
    pass


class Client:
    def __init__(self, flask_client: Any) -> None:
        self.http = flask_client
        self.seq = 0

    def __call__(
        self, method: str, path: str, key: str | None, body: Any = None, *, expect: int = 201
    ) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if method == "POST" and path.startswith("/v1/purchases"):
            self.seq += 1
            headers["Idempotency-Key"] = f"demo-{self.seq}"
        response = self.http.open(path, method=method, json=body, headers=headers)
        if response.status_code != expect:
            answer = response.get_data(as_text=True)
            raise DemoError(f"{method} {path} answered {response.status_code}: {answer}")
        return response.get_json() if response.is_json else response


def run(database: Path, console: Console | None = None) -> int:
    console = console or Console()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{database}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with LocalReceiver() as receiver:
            return _story(engine, url, console, receiver)
    finally:
        engine.dispose()


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _deliver(engine: Any, receiver: LocalReceiver, console: Console) -> None:
    """What ``royalties worker`` does each round: fan the new events out, deliver them."""
    from royalties.webhooks import deliver_due, fan_out
    from royalties.webhooks.delivery import Settings

    seen = len(receiver.got)
    fan_out(engine, {}, utcnow())
    deliver_due(engine, {}, settings=Settings(timeout=5))
    for got in receiver.got[seen:]:
        verdict = "signature verified" if got.verified else "[red]signature NOT verified[/]"
        console.print(
            f"  webhook [bold]{got.event.get('type')}[/] {got.webhook_id} -> "
            f"{receiver.url}: {verdict}"
        )


def _story(engine: Any, url: str, console: Console, receiver: LocalReceiver) -> int:
    from api.app import create_app

    sessions = make_sessionmaker(engine)
    with sessions() as session:
        admin = create_admin_key(session)
    app = create_app({"DATABASE_URL": url, "ENGINE": engine, "PLATFORM_FEE_BPS": 0})
    api = Client(app.test_client())

    console.rule("[bold]Fan royalty demo: one sale rippling through five levels (SPEC section 9)")
    console.print(f"database: {url}\n")
    artist = api("POST", "/v1/artists", admin, {"name": "Ada Lovelace"})
    shop = api(
        "POST",
        "/v1/storefronts",
        admin,
        {"name": "Corner Shop", "base_url": "https://shop.example"},
    )
    item = api(
        "POST",
        "/v1/content",
        artist["api_key"],
        {
            "title": "First Song",
            "kind": "track",
            "price": 1999,
            "currency": "usd",
            "storefront_url": "https://shop.example/first-song",
        },
    )
    hook = api(
        "POST",
        "/v1/webhook-endpoints",
        shop["api_key"],
        {"url": receiver.url, "events": ["purchase.recorded", "refund.recorded"]},
    )
    receiver.secret = hook["secret"]
    console.print(
        f"The storefront listens for purchases and refunds at {receiver.url} "
        f"(webhook endpoint {hook['id']}, signed with its secret)."
    )
    plan = api("GET", f"/v1/artists/{artist['id']}/reward-plan", artist["api_key"], expect=200)
    console.print(
        f"Artist [bold]{artist['name']}[/] sells [bold]{item['title']}[/] for "
        f"{_money(item['price'])} {item['currency']}; reward plan v{plan['version']}: "
        f"{plan['level_rates_bps']} bps, {plan['hold_days']} hold days."
    )

    fans: list[dict[str, Any]] = []
    for n in range(1, 7):
        body = {"handle": f"F{n}"} | ({"ref": fans[-1]["id"]} if fans else {})
        fans.append(api("POST", "/v1/fans", None, body))
    console.print(
        "Fans sign up in a chain: "
        + " -> ".join(f["handle"] for f in fans)
        + "  (each sponsored by the one before)"
    )
    f6 = fans[-1]
    link = api("POST", "/v1/share-links", f6["api_key"], {"content_id": item["id"]})
    click = api("GET", f"/l/{link['code']}", None, expect=302)
    ref = parse_qs(urlsplit(click.headers["Location"]).query)["ref"][0]
    console.print(
        f"F6 shares {link['url']}; the buyer clicks and lands on {click.headers['Location']}\n"
    )

    sale = api(
        "POST",
        "/v1/purchases",
        shop["api_key"],
        {
            "content_id": item["id"],
            "amount": 1999,
            "currency": "USD",
            "buyer": {"email": "buyer@example.com"},
            "share_code": ref,
        },
    )
    by_id = {f["id"]: f["handle"] for f in fans}
    table = Table(title=f"Sale {sale['id']}: {_money(sale['amount'])} {sale['currency']}")
    for column in ("level", "fan", "reward", "how"):
        table.add_column(column, justify="right" if column in ("level", "reward") else "left")
    for r in sale["rewards"]:
        rate = plan["level_rates_bps"][r["level"] - 1]
        table.add_row(
            str(r["level"]),
            by_id[r["fan_id"]],
            _money(r["amount"]),
            f"floor(1999 * {rate} / 10000) = {r['amount']}",
        )
    table.add_row("6", "F1", "0.00", "beyond five levels: nothing")
    table.add_row("", "artist", _money(sale["artist_share"]), "1999 - rewards")
    console.print(table)
    console.print(f"The buyer joined as fan {sale['buyer_id']} with F6 as sponsor.")
    _deliver(engine, receiver, console)
    console.print()

    def balances_table(title: str) -> Table:
        t = Table(title=title)
        for column in ("fan", "pending", "available", "paid"):
            t.add_column(column, justify="left" if column == "fan" else "right")
        for fan in fans:
            body = api("GET", f"/v1/fans/{fan['id']}/balance", fan["api_key"], expect=200)
            line = (
                body["balances"][0]
                if body["balances"]
                else {"pending": 0, "available": 0, "paid": 0}
            )
            t.add_row(
                fan["handle"],
                _money(line["pending"]),
                _money(line["available"]),
                _money(line["paid"]),
            )
        return t

    console.print(balances_table("Balances after the sale (USD; pending for 30 days)"))
    for amount in (1000, 999):
        refund = api(
            "POST", f"/v1/purchases/{sale['id']}/refunds", shop["api_key"], {"amount": amount}
        )
        parts = ", ".join(f"{by_id[r['fan_id']]} {r['amount']}" for r in refund["reversed"])
        console.print(
            f"Refund of {amount}: reverses {parts}, artist {refund['artist_reversed']} "
            f"(refunded so far {refund['refunded_total']} of 1999)"
        )
    _deliver(engine, receiver, console)
    console.print()
    console.print(balances_table("Balances after both refunds: every cent reversed exactly"))

    with sessions() as session:
        problems = ledger.check(session)
    if problems:
        console.print("[red]ledger check FAILED:[/] " + "; ".join(problems))
        return 1
    if len(receiver.got) != 3 or not all(got.verified for got in receiver.got):
        console.print("[red]webhooks: expected the sale and two refunds, each verified[/]")
        return 1
    console.print("[green]ledger check: every transaction and every currency sums to zero.[/]")
    return 0


def default_path() -> Path:
    return Path(os.environ.get("ROYALTIES_DEMO_DB", "royalties-demo.db"))
