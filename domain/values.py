"""Value rules shared by the aggregates: skus, quantities, money, text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from domain.errors import Forbidden, InvalidInput

SKU: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_QUANTITY: Final = 10_000
"""Most units of one sku in one order line or one restock."""
MAX_STOCK: Final = 1_000_000_000
MAX_MONEY: Final = Decimal("1000000000")
MAX_NAME: Final = 200
MAX_REASON: Final = 500
MAX_LINES: Final = 100
CENT: Final = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who issues a command: a customer or a staff member, by id."""

    id: str
    role: Literal["customer", "staff"]

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"

    def require_staff(self) -> None:
        if not self.is_staff:
            raise Forbidden("staff only")


def sku(value: str) -> str:
    if not isinstance(value, str) or not SKU.fullmatch(value):
        raise InvalidInput("sku must be 1 to 64 characters of letters, digits and ._-")
    return value


def quantity(value: int, *, field: str = "quantity", maximum: int = MAX_QUANTITY) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInput(f"{field} must be a whole number from 1 to {maximum}")
    return value


def stock(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STOCK:
        raise InvalidInput(f"initialStock must be a whole number from 0 to {MAX_STOCK}")
    return value


def money(value: object, *, field: str = "amount") -> Decimal:
    """A positive, finite amount with at most 2 decimal places, normalised to cents."""
    if isinstance(value, float):
        value = str(value)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{field} must be a decimal number such as 19.99") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_MONEY:
        raise InvalidInput(f"{field} must be a positive amount up to {MAX_MONEY}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and amount != amount.quantize(CENT):
        raise InvalidInput(f"{field} must have at most 2 decimal places")
    return amount.quantize(CENT)


def text(value: str, *, field: str, maximum: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > maximum:
        raise InvalidInput(f"{field} must be 1 to {maximum} characters, not blank")
    if any((ord(c) < 32 and c not in "\t\n") or c == "\x7f" for c in value):
        raise InvalidInput(f"{field} must not contain control characters")
    return value.strip()
