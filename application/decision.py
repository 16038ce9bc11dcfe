"""What a command's decision works with, for the command handler (application/handler.py)
and each feature's handlers: `Loaded`, the streams it touches as the handler found them;
`Executed`, what was appended; `CommandResult`, what the caller gets back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from domain import registry
from domain.aggregate import DomainEvent
from eventstore.events import AppendResult, NewEvent, RecordedEvent

S = TypeVar("S")

aggregate_of = registry.of_stream


def fold(evolve: Callable[[Any, Any], Any], initial: Any, events: Sequence[DomainEvent]) -> Any:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state


@dataclass(frozen=True)
class CommandResult(Generic[S]):
    position: int
    events: list[RecordedEvent]
    state: S
    """The aggregate's state after the command."""
    replayed: bool = False


@dataclass
class Loaded:
    """The streams a command touches: each one's version, and its state as a base (from a
    snapshot, or the initial state) plus the events after that base."""

    versions: dict[str, int] = field(default_factory=dict)
    bases: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[DomainEvent]] = field(default_factory=dict)
    since_snapshot: dict[str, int] = field(default_factory=dict)
    from_cache: bool = False

    def state(self, stream: str) -> Any:
        return fold(aggregate_of(stream).evolve, self.bases[stream], self.events[stream])


@dataclass(frozen=True)
class Executed:
    result: AppendResult
    events: list[RecordedEvent]
    states: dict[str, Any] | None = None
    """Every touched stream's state after the command; None for a replayed command."""

    @classmethod
    def of(
        cls,
        batch: dict[str, tuple[int, list[NewEvent]]],
        result: AppendResult,
        states: dict[str, Any],
    ) -> Executed:
        """`batch` ({stream: (expected version, events)}) as the append `result` recorded it,
        in position order."""
        recorded: list[RecordedEvent] = []
        positions = iter(result.positions)
        for stream, (version, events) in batch.items():
            start = max(version, 0)
            for offset, e in enumerate(events, start=1):
                recorded.append(
                    RecordedEvent(
                        next(positions),
                        e.event_id,
                        stream,
                        start + offset,
                        e.type,
                        e.schema_version,
                        e.data,
                        e.metadata,
                        e.occurred_at,
                    )
                )
        return cls(result, sorted(recorded, key=lambda r: r.position), states)
