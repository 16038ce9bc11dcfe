"""The contract's scalars."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

from domain.errors import InvalidInput
from domain.values import DECIMAL

MAX_POSITION = 2**53
_DIGITS = re.compile(r"[0-9]{1,16}")


def _parse_decimal(value: Any) -> Decimal:
    """ASCII digits only: `"١٢"` or `"1_0"` would pass `Decimal()` but are not money."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidInput('a Decimal is a string such as "19.99"')
    text = str(value).strip()
    if not DECIMAL.fullmatch(text):
        raise InvalidInput(f"{text[:40]!r} is not a decimal number such as 19.99")
    return Decimal(text)


def parse_position(value: Any) -> int:
    """A Position from JSON (a number, or a string of ASCII digits); InvalidInput otherwise."""
    if isinstance(value, bool):
        raise InvalidInput("a Position is a whole number")
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_POSITION:
        value = int(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_POSITION:
        raise InvalidInput(f"a Position is a whole number from 0 to {MAX_POSITION}")
    return value


if TYPE_CHECKING:
    Position = int
else:
    Position = NewType("Position", int)


def _parse_datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidInput("a DateTime is ISO-8601 with a time zone") from None
    if parsed.tzinfo is None:
        raise InvalidInput("a DateTime needs a time zone")
    return parsed


SCALARS: dict[object, ScalarDefinition] = {
    Decimal: strawberry.scalar(
        name="Decimal",
        description=(
            'Exact decimal number serialized as a string, e.g. "19.99". Money is never a float.'
        ),
        serialize=str,
        parse_value=_parse_decimal,
    ),
    Position: strawberry.scalar(
        name="Position",
        description=(
            "A position in the global event log: a JSON number, 1-based, increasing,"
            " exact up to 2^53."
        ),
        serialize=int,
        parse_value=parse_position,
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="ISO-8601 date-time with time zone.",
        serialize=datetime.isoformat,
        parse_value=_parse_datetime,
    ),
}
"""The contract's scalars, for `StrawberryConfig(scalar_map=...)`."""
