"""The event log's vocabulary: events going in, events coming out, and its errors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from eventstore import ids

JSONObject = dict[str, Any]

ANY: Final = -1
"""Expected version: append whatever the stream's version is."""
NO_STREAM: Final = 0
"""Expected version: the stream must not exist yet."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. The store gives it a stream version and a global position."""

    type: str
    data: JSONObject
    schema_version: int = 1
    metadata: JSONObject = field(default_factory=dict)
    event_id: uuid.UUID = field(default_factory=ids.uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: JSONObject
    metadata: JSONObject
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote: the position of each event, in the order given, and each
    stream's version after it. `replayed` is true when an idempotency key matched an earlier
    append, in which case nothing was written and the earlier result is returned."""

    positions: tuple[int, ...]
    stream_versions: dict[str, int]
    replayed: bool = False
    fingerprint: str | None = None
    """What the idempotency key was stored with (None without a key, or for a key stored
    before fingerprints existed)."""

    @property
    def last_position(self) -> int:
        return self.positions[-1]


class EventStoreError(Exception):
    """Base of the event log's errors."""


class InvalidEventError(EventStoreError, ValueError):
    """The input cannot be stored: nothing was written."""


class ConcurrencyError(EventStoreError):
    """A stream was not at the expected version: nothing was written, in any stream."""

    def __init__(self, stream_id: str, message: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class IdempotencyKeyReused(EventStoreError):
    """An idempotency key was used again by a concurrent append; retry to read its result."""


class GroupReplayed(EventStoreError):
    """One of several appends made together carried an idempotency key stored before: none
    was written, since the later ones were decided assuming it would be."""
