"""Blue/green rebuild: replay the whole log into a new generation of a projection's tables
while the current generation keeps serving readers and following the log, then swap the
views and the checkpoint in one transaction. Readers see the old model or the new one,
never an empty or half-built one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from eventstore.store import EventStore, init_connection
from projections.base import Projection
from projections.generations import create_generation, ensure_projection, point_views, schema_name
from projections.runner import apply_batch, parked_after, without_parked


@dataclass(frozen=True)
class Progress:
    name: str
    done: int
    """Log position reached."""
    head: int
    rate: float
    """Events per second so far."""

    @property
    def seconds_left(self) -> float:
        return (self.head - self.done) / self.rate if self.rate > 0 else float("inf")


class RebuildFailed(Exception):
    pass


async def rebuild(
    dsn: str,
    store: EventStore,
    projection: Projection,
    on_progress: Callable[[Progress], None] = lambda _: None,
    batch_size: int = 5_000,
) -> Progress:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "eventgraph-rebuild"})
    await init_connection(conn)
    try:
        await ensure_projection(conn, projection)
        name = projection.name
        if not await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtext('eventgraph.rebuild.' || $1))", name
        ):
            raise RebuildFailed(f"{name} is already being rebuilt by another process")
        current = await conn.fetchval(
            "SELECT generation FROM eventgraph.projections WHERE name = $1", name
        )
        generation = current + 1
        schema = await create_generation(conn, projection, generation)
        started = time.perf_counter()
        position = 0

        async def catch_up() -> None:
            """Apply the log after `position`, passing over the events parked for this
            projection, exactly as the live projector does."""
            nonlocal position
            parked = await parked_after(conn, name, 0)
            while True:
                events = await store.read_all(position, batch_size, whole_appends=True)
                if not events:
                    return
                kept = without_parked(events, parked, name)
                async with conn.transaction():
                    _, failure = await apply_batch(conn, projection, schema, kept)
                if failure is not None:
                    raise RebuildFailed(
                        f"{failure} (the live projection goes on; park the event with"
                        f" `eventgraph park {name} {failure.event.position} --reason …`"
                        " if it can never be applied)"
                    )
                position = events[-1].position
                elapsed = time.perf_counter() - started
                head = max(store.frontier.safe_position, position)
                on_progress(Progress(name, position, head, position / elapsed if elapsed else 0))

        await catch_up()
        # Hold the live projector's checkpoint row while the last events are applied and the
        # views are swapped: it waits, then carries on from the new generation's position.
        async with conn.transaction():
            await conn.fetchrow(
                "SELECT 1 FROM eventgraph.projections WHERE name = $1 FOR UPDATE", name
            )
            await catch_up()
            await point_views(conn, projection, schema)
            await conn.execute(
                "UPDATE eventgraph.projections SET generation = $2, position = $3, version = $4,"
                " status = 'running', error = NULL, failed_position = NULL, updated_at = now()"
                " WHERE name = $1",
                name,
                generation,
                position,
                projection.version,
            )
        # Readers still inside a query on the old tables finish first: DROP waits for them.
        for old in range(1, generation):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema_name(name, old)} CASCADE")
        elapsed = time.perf_counter() - started
        return Progress(name, position, position, position / elapsed if elapsed else 0)
    finally:
        await conn.close()
