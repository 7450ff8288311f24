"""Reading the dashboard's forms: the reward plan and the statement period.

The plan's rules are :func:`royalties.plans.validate_plan`'s; this only turns the form's
text fields into the values it checks, and names the fields an error concerns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from royalties import plans
from royalties.errors import PlanError, ValidationFailed
from royalties.models import RewardPlan
from royalties.models.graph import MAX_DEPTH

_INT = re.compile(r"^[+-]?\d{1,9}$")
RATE_FIELDS = tuple(f"rate_{level}" for level in range(1, MAX_DEPTH + 1))


def plan_from_form(form: Mapping[str, str]) -> tuple[list[int], int]:
    """Rates from ``rate_1`` .. ``rate_5`` (trailing blanks unused) and ``hold_days``,
    validated; raises PlanError naming the field."""
    raw = [str(form.get(name, "")).strip() for name in RATE_FIELDS]
    while raw and not raw[-1]:
        raw.pop()
    rates: list[object] = []
    for level, text in enumerate(raw, start=1):
        if not _INT.match(text):
            what = "is empty" if not text else f"is {text!r}"
            raise PlanError(
                f"Level {level} {what}: give each level a whole number of basis points, "
                "from level 1 without gaps.",
                fields={f"rate_{level}": ["not a whole number"]},
            )
        rates.append(int(text))
    hold_text = str(form.get("hold_days", "")).strip()
    if not _INT.match(hold_text):
        raise PlanError("Hold days must be a whole number.", fields={"hold_days": ["not a number"]})
    return plans.validate_plan(rates, int(hold_text))


def plan_values(plan: RewardPlan, form: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the plan form shows: what was typed, else the current plan."""
    rates = [str(rate) for rate in plan.level_rates_bps]
    values = {name: rates[i] if i < len(rates) else "" for i, name in enumerate(RATE_FIELDS)}
    values["hold_days"] = str(plan.hold_days)
    if form is not None:
        values = {name: str(form.get(name, "")) for name in values}
    return values


def invalid_fields(error: PlanError | None, values: Mapping[str, str]) -> set[str]:
    """The form fields to mark invalid for ``error``."""
    if error is None:
        return set()
    invalid = set(error.fields) & set(values)
    if "level_rates_bps" in error.fields:  # a rule about the rates together
        filled = {name for name in RATE_FIELDS if values.get(name)}
        invalid |= filled or {RATE_FIELDS[0]}
    return invalid


def day(text: str | None, field: str) -> datetime | None:
    """``2026-11-01`` -> midnight UTC of that day; empty -> None; else ValidationFailed."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed(
            f"'{field}' must be a day such as 2026-11-01", fields={field: ["not a date"]}
        ) from None
