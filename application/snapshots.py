"""Snapshots of aggregate state: a shortcut for loading a long stream (a product's stock
moves with every order), never the truth. Saved best effort after a command once a stream
has grown SNAPSHOT_EVERY events past its last one; read back only if their tag matches."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from domain.codec import decode_state, encode_state
from domain.registry import of_stream
from eventstore.events import AppendResult
from eventstore.store import EventStore

log = logging.getLogger(__name__)

SNAPSHOT_TAG = "shop-state-v2"
"""Names the encoding of snapshot states: change it when a state's shape changes, and the old
snapshots are simply not used."""
SNAPSHOT_EVERY = 10
"""Events after a snapshot (or the stream's start) that make a command save a new one."""


def state_of(stream: str, snapshot: dict[str, Any]) -> Any:
    """A snapshot's state, as the stream's aggregate holds it."""
    return decode_state(of_stream(stream).state_type, snapshot)


async def save_due(
    store: EventStore,
    since_snapshot: dict[str, int],
    states: dict[str, Any],
    result: AppendResult,
) -> None:
    """Save the state of the streams that have grown long since their last snapshot, and
    count them from zero again."""
    for stream, count in since_snapshot.items():
        if count >= SNAPSHOT_EVERY and states[stream] is not None:
            try:
                await store.save_snapshot(
                    stream,
                    result.stream_versions[stream],
                    SNAPSHOT_TAG,
                    encode_state(states[stream]),
                )
                since_snapshot[stream] = 0
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("could not save a snapshot of %s: %s", stream, exc)
