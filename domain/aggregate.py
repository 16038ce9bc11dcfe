"""What the rest of the service needs to know of an aggregate, declared by the aggregate's own
module (`AGGREGATE = AggregateType(...)` at its end) and listed once in `domain/registry.py`:
the prefix of its streams, its events, how to fold them into state, and, for each event, the
stream it belongs to and the streams it refers to (which the command handler checks before
every append: see `domain/integrity.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol


class DomainEvent(Protocol):
    """Any domain event: a frozen dataclass, named in the past tense, with a schema version
    and the time it happened (which travels in the log's own column, not in the data)."""

    schema_version: ClassVar[int]
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def occurred_at(self) -> datetime: ...


@dataclass(frozen=True)
class AggregateType:
    prefix: str
    """Its streams are named `<prefix><id>`."""
    events: tuple[type, ...]
    evolve: Callable[[Any, Any], Any]
    initial: Any
    state_type: type
    subject: Callable[[Any], str]
    """The stream an event of this aggregate belongs to."""
    references: Callable[[Any], tuple[str, ...]] = field(default=lambda _event: ())
    """The streams an event refers to, which must exist when it is appended."""
    canonical_id: Callable[[str], str] = field(default=lambda id_: id_)
    """The one spelling of the id in a stream name a client wrote (an order id may be spelled
    many ways), or InvalidInput."""
