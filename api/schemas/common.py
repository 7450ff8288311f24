"""Field types shared by every schema: strict integers for money, ISO currencies,
plain text without control characters, ids of the right shape."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from royalties.errors import MoneyError
from royalties.money import MAX_AMOUNT, normalize_currency


class StrictSchema(ma.Schema):
    """Unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class WholeMatch(ma.validate.Regexp):
    """A Regexp the whole value must match (``re.match`` lets ``$`` pass a final newline).

    Being a Regexp, the OpenAPI document states it as the field's ``pattern``.
    """

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


_NO_CONTROL_CHARS = WholeMatch(r"^[^\x00-\x1f\x7f]*$", error="control characters are not allowed")


def Text(*, max_length: int, min_length: int = 1, **kwargs: Any) -> ma.fields.String:
    """A single-line string of bounded length with no control characters."""
    return ma.fields.String(
        validate=[ma.validate.Length(min=min_length, max=max_length), _NO_CONTROL_CHARS],
        **kwargs,
    )


def Money(*, allow_zero: bool = False, **kwargs: Any) -> ma.fields.Integer:
    """Integer minor units: floats, numeric strings and booleans are refused."""
    return ma.fields.Integer(
        strict=True,
        validate=ma.validate.Range(min=0 if allow_zero else 1, max=MAX_AMOUNT),
        metadata={"description": "integer amount in minor units (cents)"},
        **kwargs,
    )


class Currency(ma.fields.String):
    """An ISO 4217 code, accepted in either case, loaded upper-case."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        raw = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_currency(raw)
        except MoneyError as exc:
            raise ma.ValidationError(exc.detail) from exc


def HttpUrl(**kwargs: Any) -> ma.fields.Url:
    return ma.fields.Url(
        require_tld=False,
        schemes={"http", "https"},
        validate=ma.validate.Length(max=2000),
        **kwargs,
    )


class PageQuery(StrictSchema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
    cursor = ma.fields.String(load_default=None, validate=ma.validate.Length(max=128))
