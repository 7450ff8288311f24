"""Opaque identifiers and secrets.

Ids are a short type prefix plus 20 characters of Crockford-style base32 from the OS
random source (100 bits): unguessable, URL-safe, and recognisable in logs
(``fan_``, ``art_``...). ``looks_like`` lets the API reject ids of the wrong shape early.

Rows written in volume on every sale (purchases, rewards, events) get ordered ids of
the same shape (:func:`new_ordered_id`): the first 9 characters are the time in
milliseconds, the other 11 random (55 bits). An index on a random key takes each new
entry on a random page, so every insert dirties, logs and checkpoints a page of its
own; ordered keys land on the index's last pages, shared by everything written in the
same moment (``bench/purchases.py`` prints the bytes written per purchase).
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ID_RE = re.compile(r"^[a-z]{2,4}_[0-9a-hjkmnp-tv-z]{20}$")


# Each random byte maps to the alphabet by its low five bits: 256 is a multiple of 32,
# so every character stays uniform (5 bits each), at a fraction of secrets.choice's cost.
_BYTE_TO_CHAR = bytes(ord(_ALPHABET[b % 32]) for b in range(256))


def random_token(length: int) -> str:
    """``length`` random base32 characters."""
    return secrets.token_bytes(length).translate(_BYTE_TO_CHAR).decode("ascii")


def new_id(prefix: str) -> str:
    """A new opaque id such as ``fan_8k3m...``."""
    return f"{prefix}_{random_token(20)}"


_TIME_CHARS = 9  # 45 bits of milliseconds: until the year 3084
_last_stamp = (-1, "")  # (millisecond, its characters): one sale makes a dozen ids in one


def new_ordered_id(prefix: str) -> str:
    """A new id like :func:`new_id`'s whose text sorts by creation time (to the
    millisecond; ids of the same millisecond in random order)."""
    global _last_stamp
    ms, stamp = time.time_ns() // 1_000_000, _last_stamp
    if ms != stamp[0]:
        chars, rest = [], ms
        for _ in range(_TIME_CHARS):
            rest, digit = divmod(rest, 32)
            chars.append(_ALPHABET[digit])
        _last_stamp = stamp = (ms, "".join(reversed(chars)))
    return f"{prefix}_{stamp[1]}{random_token(20 - _TIME_CHARS)}"


def looks_like_id(value: str) -> bool:
    """True when ``value`` has the shape of an id made by :func:`new_id` (or
    :func:`new_ordered_id`: the same shape)."""
    return bool(_ID_RE.fullmatch(value))
