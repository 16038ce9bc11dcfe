"""Domain events to and from the log's JSON: field names in camelCase, money as strings.
`occurred_at` travels in the log's own column, not in the data."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any

from domain.order import (
    OrderCancelled,
    OrderEvent,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentProcessed,
    PaymentRefunded,
)
from domain.product import InventoryUpdated, ProductEvent, ProductRegistered

DomainEvent = OrderEvent | ProductEvent

EVENT_TYPES: dict[str, Any] = {
    cls.__name__: cls
    for cls in (
        ProductRegistered,
        InventoryUpdated,
        OrderPlaced,
        PaymentProcessed,
        OrderShipped,
        OrderCancelled,
        PaymentRefunded,
    )
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _to_json(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def encode(event: DomainEvent) -> tuple[str, int, dict[str, Any]]:
    """(type, schema version, data) of a domain event."""
    data = {
        _camel(f.name): _to_json(getattr(event, f.name))
        for f in dataclasses.fields(event)
        if f.name != "occurred_at"
    }
    return type(event).__name__, event.schema_version, data


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_json(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _from_json(inner[0], value)
    if origin is tuple:
        (item, _) = typing.get_args(hint)
        return tuple(_from_json(item, v) for v in value)
    if hint is Decimal:
        return Decimal(value)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        fields = _hints(hint)
        cls: Any = hint
        return cls(**{_snake(k): _from_json(fields[_snake(k)], v) for k, v in value.items()})
    return value


def decode(event_type: str, data: dict[str, Any], occurred_at: datetime) -> DomainEvent:
    """The domain event for data already upcast to the current schema version."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise LookupError(f"unknown event type {event_type!r}")
    hints = _hints(cls)
    kwargs = {_snake(k): _from_json(hints[_snake(k)], v) for k, v in data.items()}
    event: DomainEvent = cls(**kwargs, occurred_at=occurred_at)
    return event


def encode_state(state: object) -> dict[str, Any]:
    """An aggregate's state (a frozen dataclass) as JSON, for snapshots."""
    encoded = _to_json(state)
    assert isinstance(encoded, dict)
    return encoded


def decode_state(cls: type[Any], data: dict[str, Any]) -> Any:
    return _from_json(cls, data)


__all__ = [
    "EVENT_TYPES",
    "DomainEvent",
    "OrderLine",
    "decode",
    "decode_state",
    "encode",
    "encode_state",
]
