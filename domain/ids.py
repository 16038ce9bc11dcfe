"""Identifiers of entities, parsed once at the edge into their one canonical spelling.

An order id is a UUID. A client may spell it any way that parses (upper case, braces,
`urn:uuid:`, no hyphens), but only the canonical form (lower-case, hyphenated) ever reaches
a command, an event, a stream name or a read model: two spellings of one id must never name
two things, or an event written under one spelling meets a read model keyed by the other.
`OrderId` is a distinct type so that a decider cannot be handed a raw string by mistake."""

from __future__ import annotations

import re
import uuid
from typing import Final, NewType

from domain.errors import InvalidInput

OrderId = NewType("OrderId", str)
"""A canonical order id: `str(uuid.UUID(...))`."""

_HEX: Final = "[0-9a-fA-F]"
_HYPHENATED: Final = re.compile(f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}")
_PLAIN: Final = re.compile(f"{_HEX}{{32}}")


def order_id(value: object, *, field: str = "orderId") -> OrderId:
    """The canonical form of a client's order id, or BAD_USER_INPUT. Only ASCII hex digits
    are accepted, in the spellings `uuid.UUID` documents (hyphenated or not, in braces, or
    after `urn:uuid:`); anything else, however `uuid.UUID` might read it, is refused."""
    if isinstance(value, str) and len(value) <= 45:
        text = value
        if text[:9].lower() == "urn:uuid:":
            text = text[9:]
        elif text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        if _HYPHENATED.fullmatch(text) or _PLAIN.fullmatch(text):
            return OrderId(str(uuid.UUID(text)))
    raise InvalidInput(f"{field} must be a UUID such as 3f2b6c1e-9d4a-4c1b-8f3e-2a7d5e9c0b14")


def new_order_id(value: uuid.UUID) -> OrderId:
    return OrderId(str(value))


def canonical_legacy_order_id(value: object) -> object:
    """What an order id that an earlier version stored meant. Earlier versions named the
    stream by `uuid.UUID(raw)` but stored `raw` itself in events; `uuid.UUID` is therefore the
    right reader for such a value. Anything it cannot read is returned unchanged."""
    if not isinstance(value, str):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value
