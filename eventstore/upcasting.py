"""Upcasters bring a stored event's data from the schema version it was written in to the
current one, one version at a time, as it is read. Stored events are never rewritten."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from eventstore.events import JSONObject, RecordedEvent

Upcaster = Callable[[JSONObject], JSONObject]


class UpcasterRegistry:
    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}
        self._current: dict[str, int] = {}

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """`upcaster` turns `event_type` data of `from_version` into `from_version + 1`."""
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} v{from_version} already exists")
        self._steps[key] = upcaster
        self._current[event_type] = max(self._current.get(event_type, 1), from_version + 1)

    def current_version(self, event_type: str) -> int:
        return self._current.get(event_type, 1)

    def upcast(self, event: RecordedEvent) -> RecordedEvent:
        target = self.current_version(event.type)
        if event.schema_version >= target:
            return event
        data, version = event.data, event.schema_version
        while version < target:
            step = self._steps.get((event.type, version))
            if step is None:
                raise LookupError(f"no upcaster for {event.type} v{version}")
            data = step(data)
            version += 1
        return replace(event, data=data, schema_version=version)
