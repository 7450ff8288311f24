"""Money as integer minor units with an ISO 4217 currency.

Invariant: an amount is always a Python ``int`` (never ``bool``, never ``float``, never
``Decimal``) and a currency is a three-letter upper-case ISO 4217 code. Everything that
divides money uses floor division on integers, so results are exact and reproducible.

How people read an amount (the dashboard, fan emails) is written here once:
:func:`format_money`, ``"12,345.67 USD"``, never through a float.
"""

from __future__ import annotations

from royalties.errors import MoneyError

#: Upper bound for one sale or refund: 10^12 minor units (ten billion dollars), far
#: below BIGINT and any sane sale, so that ``amount * rate`` never overflows in SQL.
MAX_AMOUNT = 10**12

# Active ISO 4217 codes (2024 list, funds and precious metals excluded).
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP
    MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR
    RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR
    ZMW ZWG
    """.split()
)


def normalize_currency(code: object) -> str:
    """Return ``code`` upper-cased if it is an ISO 4217 currency, else raise MoneyError."""
    if not isinstance(code, str) or len(code) != 3:
        raise MoneyError("currency must be a three-letter ISO 4217 code")
    upper = code.upper()
    if upper not in ISO_4217:
        raise MoneyError(f"unknown currency {code!r}: not an ISO 4217 code")
    return upper


def check_amount(amount: object, *, allow_zero: bool = False) -> int:
    """Return ``amount`` if it is an integer in (0, MAX_AMOUNT], else raise MoneyError."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MoneyError("amounts are integers in minor units (cents), not floats or strings")
    low = 0 if allow_zero else 1
    if not low <= amount <= MAX_AMOUNT:
        raise MoneyError(f"amount must be between {low} and {MAX_AMOUNT} minor units")
    return amount


def share_bps(amount: int, bps: int) -> int:
    """``floor(amount * bps / 10000)`` in exact integer arithmetic."""
    return (amount * bps) // 10_000


def prorate(part: int, numerator: int, denominator: int) -> int:
    """``floor(part * numerator / denominator)`` in exact integer arithmetic."""
    return (part * numerator) // denominator


# ISO 4217 minor-unit exponents other than 2 (the currencies this engine is likely to see).
_EXPONENTS = {
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


def exponent(currency: str) -> int:
    """How many digits of the currency's minor units follow the decimal point."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_money(amount: int, currency: str | None) -> str:
    """``1234567, "USD"`` -> ``"12,345.67 USD"``; without a currency, the bare minor units."""
    amount = int(amount)
    if not currency:
        return f"{amount:,}"
    digits = exponent(currency)
    whole, frac = divmod(abs(amount), 10**digits)
    text = f"{whole:,}" + (f".{frac:0{digits}d}" if digits else "")
    return f"{'-' if amount < 0 else ''}{text} {currency}"
