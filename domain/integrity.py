"""What an event is about and what it refers to, so that the command handler can refuse to
append an event that a projection could not apply.

Every event belongs to the stream of the entity it is about (`subject`), and may refer to
other entities (`references`: an order whose stock moved). A command may append an event
only to its subject's stream, and only while everything it refers to exists after the
command, under the same canonical id the read models will look it up by. A new event type
whose aggregate is not registered, or that names another stream, is refused here, before
the append, never met by a projector afterwards."""

from __future__ import annotations

from domain import registry
from domain.aggregate import DomainEvent


class IntegrityError(Exception):
    """A decided event does not fit the streams the command loaded: a bug, never appended."""


def subject(event: DomainEvent) -> str:
    return registry.of_event(event).subject(event)


def references(event: DomainEvent) -> tuple[str, ...]:
    return registry.of_event(event).references(event)


def check(decided: dict[str, list[DomainEvent]], exists: dict[str, bool]) -> None:
    """Raise IntegrityError unless each event of `decided` (stream -> events) is about its
    stream and refers only to streams that exist after the command (`exists`)."""
    for stream, events in decided.items():
        for event in events:
            try:
                about, refs = subject(event), references(event)
            except LookupError as exc:
                raise IntegrityError(str(exc)) from None
            if about != stream:
                raise IntegrityError(f"{type(event).__name__} about {about} decided for {stream}")
            for ref in refs:
                if not exists.get(ref, False):
                    raise IntegrityError(
                        f"{type(event).__name__} on {stream} refers to {ref}, which the"
                        " command did not establish"
                    )
