"""Domain events to and from the log's JSON: field names in camelCase, money as strings.
`occurred_at` travels in the log's own column, not in the data."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any

from domain.aggregate import DomainEvent
from domain.order import OrderLine
from domain.registry import EVENT_TYPES

SEALED = "$personal"
"""The key that marks a sealed personal field in the log's JSON (eventstore/personal.py)."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


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


Converter = Callable[..., Any]


def _identity(value: Any) -> Any:
    return value


@cache
def _converter(hint: Any) -> Converter:
    """A function from JSON to the Python value of type `hint`, built once per type."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        inner = _converter(next(a for a in typing.get_args(hint) if a is not type(None)))
        # A sealed personal field its reader could not open (eventstore/personal.py) reads as
        # erased: never as a value, never an error.
        return lambda v: None if v is None or (type(v) is dict and SEALED in v) else inner(v)
    if origin is tuple:
        item = _converter(typing.get_args(hint)[0])
        return lambda v: tuple(item(x) for x in v)
    if hint is Decimal:
        return Decimal
    if hint is datetime:
        return datetime.fromisoformat
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_converter(hint)
    return _identity


def _dataclass_converter(cls: Any, skip: frozenset[str] = frozenset()) -> Converter:
    hints = typing.get_type_hints(cls)
    fields = [
        (_camel(f.name), f.name, _converter(hints[f.name]))
        for f in dataclasses.fields(cls)
        if f.name not in skip
    ]

    def convert(data: dict[str, Any], **extra: Any) -> Any:
        return cls(**{name: conv(data[key]) for key, name, conv in fields if key in data}, **extra)

    return convert


_DECODERS = {
    name: _dataclass_converter(cls, frozenset({"occurred_at"})) for name, cls in EVENT_TYPES.items()
}


def decode(event_type: str, data: dict[str, Any], occurred_at: datetime) -> DomainEvent:
    """The domain event for data already upcast to the current schema version."""
    decoder = _DECODERS.get(event_type)
    if decoder is None:
        raise LookupError(f"unknown event type {event_type!r}")
    event: DomainEvent = decoder(data, occurred_at=occurred_at)
    return event


def encode_state(state: object) -> dict[str, Any]:
    """An aggregate's state (a frozen dataclass) as JSON, for snapshots."""
    encoded = _to_json(state)
    assert isinstance(encoded, dict)
    return encoded


def decode_state(cls: Any, data: dict[str, Any]) -> Any:
    return _converter(cls)(data)


__all__ = [
    "EVENT_TYPES",
    "DomainEvent",
    "OrderLine",
    "decode",
    "decode_state",
    "encode",
    "encode_state",
]


def personal_fields() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each event type with personal data: (the field naming its subject, its personal fields),
    as they are named in the log's JSON (see `OrderPlaced.personal`)."""
    found = {}
    for name, cls in EVENT_TYPES.items():
        fields: tuple[str, ...] = getattr(cls, "personal", ())
        if fields:
            subject: str = getattr(cls, "subject")  # noqa: B009 - declared with `personal`
            found[name] = (_camel(subject), tuple(_camel(f) for f in fields))
    return found


def forgetting_events() -> dict[str, str]:
    """Each event type that forgets a subject's personal data, with the field naming the
    subject (see `CustomerForgotten.forgets`)."""
    return {
        name: _camel(cls.forgets) for name, cls in EVENT_TYPES.items() if hasattr(cls, "forgets")
    }
