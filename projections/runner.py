"""The projector: one loop per projection that reads the log after its checkpoint, in
commit-safe order, and applies it in batches, moving the checkpoint in the same transaction.

Exactly one process applies a projection at a time: the loop holds a session advisory lock
on its own connection for as long as it leads, and does every apply transaction on that
connection. If the connection dies, Postgres drops the lock and rolls back the transaction in
flight together, and a standby (polling for the lock) takes over from the last checkpoint.

Long on purpose: leading, stepping and failing belong together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from eventstore.events import RecordedEvent
from eventstore.leadership import wait_to_lead
from eventstore.notify import Signal
from eventstore.store import CONNECTION_ERRORS, EventStore, init_connection
from projections.base import Projection
from projections.generations import schema_name
from support import metrics
from support.background import Backoff, reconnecting

log = logging.getLogger(__name__)


TRANSIENT_ERRORS = (
    *CONNECTION_ERRORS,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.QueryCanceledError,  # statement timeout
    asyncpg.LockNotAvailableError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
)
"""Failures of the moment, not of the event: the projector retries from its checkpoint
rather than stopping on them."""


@dataclass(frozen=True)
class Checkpoint:
    generation: int
    position: int
    status: str
    parked: frozenset[int] = frozenset()
    """Positions after `position` that an operator parked for this projection."""


PARKED_AFTER = """
SELECT coalesce(array_agg(position), '{}') FROM eventgraph.parked_events
 WHERE projection = $1 AND position > $2
"""


async def parked_after(conn: asyncpg.Connection, name: str, position: int) -> frozenset[int]:
    """The positions after `position` parked for projection `name` (see `eventgraph park`)."""
    return frozenset(await conn.fetchval(PARKED_AFTER, name, position))


def without_parked(
    events: Sequence[RecordedEvent], parked: frozenset[int], name: str
) -> list[RecordedEvent]:
    """`events` less the parked ones, each passed over with a log line, never silently."""
    if not parked:
        return list(events)
    kept = []
    for event in events:
        if event.position in parked:
            log.warning(
                "projection %s: passing over parked event %s at position %d (stream %s)",
                name,
                event.type,
                event.position,
                event.stream_id,
            )
        else:
            kept.append(event)
    return kept


class ApplyFailed(Exception):
    def __init__(self, event: RecordedEvent, cause: BaseException) -> None:
        super().__init__(
            f"cannot apply {event.type} at position {event.position}"
            f" (stream {event.stream_id} v{event.stream_version}): {cause!r}"
        )
        self.event = event


async def apply_batch(
    conn: asyncpg.Connection, projection: Projection, schema: str, events: Sequence[RecordedEvent]
) -> tuple[int, ApplyFailed | None]:
    """Apply `events` inside the caller's transaction. Returns the position applied up to and,
    if an event cannot be applied, the failure: every event before it is applied, none after."""
    if not events:
        return 0, None
    try:
        async with conn.transaction():
            await projection.apply(conn, schema, events)
        return events[-1].position, None
    except TRANSIENT_ERRORS:
        raise
    except Exception:
        applied = 0
        for event in events:
            try:
                async with conn.transaction():
                    await projection.apply(conn, schema, [event])
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                return applied, ApplyFailed(event, exc)
            applied = event.position
        raise AssertionError("a batch failed but each of its events applied") from None


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        dsn: str,
        store: EventStore,
        log_signal: Signal,
        on_applied: Callable[[str, int], None],
        *,
        batch_size: int = 1_000,
        poll_interval: float = 0.5,
        standby_interval: float = 0.5,
        linger: float = 0.005,
    ) -> None:
        self.projection = projection
        self._dsn = dsn
        self._store = store
        self._signal = log_signal
        self._on_applied = on_applied
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._linger = linger
        self._loop = reconnecting(
            f"eventgraph-projector-{self.projection.name}",
            self._session,
            expected=(*CONNECTION_ERRORS, asyncpg.PostgresError),
        )
        self.role = "starting"
        self.error: str | None = None

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _session(self, backoff: Backoff) -> None:
        """Connect, stand by until this process leads the projection, then lead it until the
        connection is lost (which also gives up the lead)."""
        if self.role == "reconnecting":
            metrics.PROJECTION_RECONNECTS.labels(self.projection.name).inc()
        self.role = "connecting"
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": f"eventgraph-projector-{self.projection.name}"},
        )
        try:
            await init_connection(conn)
            self.role = "standby"
            await wait_to_lead(
                conn, f"eventgraph.projection.{self.projection.name}", self._standby_interval
            )
            self.role = "leader"
            log.info("projector %s: leading", self.projection.name)
            backoff.reset()
            await self._lead(conn)
        finally:
            self.role = "reconnecting"
            if not conn.is_closed():
                conn.terminate()

    async def _lead(self, conn: asyncpg.Connection) -> None:
        while True:
            armed = self._signal.armed()
            if await self.step(conn):
                continue
            quick = self._store.frontier.waiting_on_holes
            if await Signal.wait(armed, 0.005 if quick else self._poll_interval):
                # Woken by a commit: linger a moment so that a busy log is applied in batches
                # of many events rather than one transaction per command.
                await asyncio.sleep(self._linger)

    async def _checkpoint(self, conn: asyncpg.Connection, lock: bool = False) -> Checkpoint:
        row = await conn.fetchrow(
            "SELECT p.generation, p.position, p.status, (SELECT coalesce(array_agg(k.position),"
            " '{}') FROM eventgraph.parked_events k WHERE k.projection = p.name"
            " AND k.position > p.position) AS parked"
            " FROM eventgraph.projections p WHERE p.name = $1"
            + (" FOR UPDATE OF p" if lock else ""),
            self.projection.name,
        )
        if row is None:
            raise LookupError(f"projection {self.projection.name} is not set up")
        return Checkpoint(
            row["generation"], row["position"], row["status"], frozenset(row["parked"])
        )

    async def step(self, conn: asyncpg.Connection) -> bool:
        """Apply the next batch, if any; True if the checkpoint moved (or changed under us)."""
        name = self.projection.name
        seen = await self._checkpoint(conn)
        self._on_applied(name, seen.position)
        if seen.status == "failed":
            return False
        events = await self._store.read_all(seen.position, self._batch_size, whole_appends=True)
        if not events:
            return False
        started = time.perf_counter()
        async with conn.transaction():
            current = await self._checkpoint(conn, lock=True)
            if current != seen:
                return True  # a rebuild switched generations meanwhile: start again from it
            schema = schema_name(name, seen.generation)
            kept = without_parked(events, current.parked, name)
            applied, failure = await apply_batch(conn, self.projection, schema, kept)
            # Parked events count as passed once everything before them is applied.
            position = events[-1].position if failure is None else max(applied, seen.position)
            if failure is not None:
                stuck = failure.event.position
                position = max([seen.position, applied, *(p for p in current.parked if p < stuck)])
            await conn.execute(
                "UPDATE eventgraph.projections SET position = $2, status = $3, error = $4,"
                " failed_position = $5, updated_at = now() WHERE name = $1",
                name,
                position,
                "failed" if failure else "running",
                str(failure) if failure else None,
                failure.event.position if failure else None,
            )
        metrics.PROJECTION_BATCH_SECONDS.labels(name).observe(time.perf_counter() - started)
        metrics.PROJECTION_EVENTS.labels(name).inc(sum(e.position <= position for e in events))
        if failure is not None:
            self.error = str(failure)
            log.error("projector %s stopped: %s", name, failure)
        else:
            metrics.EVENT_TIMES.applied(position, events[-1].occurred_at.timestamp())
        self._on_applied(name, position)
        return failure is None
