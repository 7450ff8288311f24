"""How the dashboard writes money, rates, scores and dates. No floats: integers, and
decimals parsed from the API's six-decimal score strings. Money is written by
``royalties.money.format_money``, the one home of that format (fan emails use it too)."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from royalties.money import exponent
from royalties.money import format_money as money

__all__ = ["bps", "exponent", "money", "share", "when"]


def bps(rate: int) -> str:
    """Basis points as a percentage: ``250`` -> ``"2.5%"``, ``500`` -> ``"5%"``."""
    whole, frac = divmod(int(rate), 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


def share(score: str | None) -> str:
    """A score between 0 and 1 (PageRank, betweenness: six-decimal strings) as a
    percentage with one decimal: ``"0.125000"`` -> ``"12.5%"``. A share too small to
    show is ``"<0.1%"``, never a bare ``0.000123``; nothing readable is ``"—"``."""
    try:
        percent = Decimal(str(score)) * 100
    except InvalidOperation:
        return "—"
    if not percent.is_finite():
        return "—"
    if percent == 0:
        return "0%"
    shown = percent.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return "<0.1%" if shown == 0 else f"{shown}%"


def when(moment: datetime | str | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        return moment[:16].replace("T", " ")
    return moment.strftime("%Y-%m-%d %H:%M")
