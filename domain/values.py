"""Value rules shared by the aggregates: skus, quantities, money, text."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
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
MAX_SUB: Final = 200
"""Longest caller id (a token's `sub`)."""
CENT: Final = Decimal("0.01")
DECIMAL: Final = re.compile(r"[+-]?[0-9]{1,20}(?:\.[0-9]{1,20})?")
"""A decimal number as text: ASCII digits only, no exponent, no underscores."""


SYSTEM_PREFIX: Final = "system:"
"""The ids of the server's own actors; no token's `sub` may start so (application/auth.py)."""

Role = Literal["customer", "staff", "system"]
ROLES: Final[tuple[Role, ...]] = ("customer", "staff")
"""The roles a token can carry. `system` is the server's own (its reactions: see
`application/reactions.py`) and never comes from outside."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who issues a command: a customer or a staff member, by id."""

    id: str
    role: Role

    @classmethod
    def system(cls, name: str) -> Actor:
        """The server itself, acting for one of its reactions."""
        return cls(f"{SYSTEM_PREFIX}{name}", "system")

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"

    @property
    def is_system(self) -> bool:
        return self.role == "system"

    def require_system(self) -> None:
        if not self.is_system:
            raise Forbidden("only the server itself does this")

    def require_staff(self) -> None:
        if not self.is_staff:
            raise Forbidden("staff only")

    def require_access(
        self, customer_id: str, refusal: str = "this order belongs to another customer"
    ) -> None:
        """Staff see every customer's things; a customer only their own."""
        if not (self.is_staff or self.is_system) and customer_id != self.id:
            raise Forbidden(refusal)


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
    if isinstance(value, float | int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        value = Decimal(value.strip())
    if not isinstance(value, Decimal):
        raise InvalidInput(f"{field} must be a decimal number such as 19.99")
    amount = value
    if not amount.is_finite() or amount <= 0 or amount > MAX_MONEY:
        raise InvalidInput(f"{field} must be a positive amount up to {MAX_MONEY}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and amount != amount.quantize(CENT):
        raise InvalidInput(f"{field} must have at most 2 decimal places")
    return amount.quantize(CENT)


def is_clean_text(value: object, *, newlines: bool = False) -> bool:
    """True for a string with no control characters (NUL, C0, DEL, C1) and no lone surrogates
    (which no database can store); tab and newline only if `newlines`."""
    return isinstance(value, str) and not any(
        unicodedata.category(c) in ("Cc", "Cs") and not (newlines and c in "\t\n") for c in value
    )


def text(value: str, *, field: str, maximum: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > maximum:
        raise InvalidInput(f"{field} must be 1 to {maximum} characters, not blank")
    if not is_clean_text(value, newlines=True):
        raise InvalidInput(f"{field} must not contain control characters")
    return value.strip()
