"""What an operator sees of the projections and the one decision they can take about them.

A projection that meets an event it cannot apply stops there: it never skips an event on its
own. The operator reads why (`status`), and may park that one event for that one projection
(`park`): a recorded decision, with a reason and a name, which the projector and every rebuild
of that projection honour and `/readyz` lists. Nothing else moves a stopped projection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from domain.values import MAX_REASON, MAX_SUB, is_clean_text
from projections import by_name

_STATUS = """
SELECT p.name, p.position, p.status, p.error, p.generation, p.failed_position
  FROM eventgraph.projections p ORDER BY p.name
"""
_FROM_THE_LOG = """
SELECT q.position,
       (SELECT e.recorded_at FROM eventgraph.events e
         WHERE e.position > q.position AND e.position <= $2
         ORDER BY e.position LIMIT 1) AS oldest_unapplied_at,
       f.event_id AS failed_event_id, f.type AS failed_type, f.stream_id AS failed_stream_id
  FROM unnest($1::bigint[], $3::bigint[]) WITH ORDINALITY AS q(position, failed, i)
  LEFT JOIN eventgraph.events f ON f.position = q.failed
 ORDER BY q.i
"""
_PARKED = """
SELECT projection, position, event_id, event_type, stream_id, error, reason, parked_by, parked_at
  FROM eventgraph.parked_events ORDER BY projection, position
"""


class ParkRefused(Exception):
    """The park was not recorded: the message says why."""


async def status(
    conn: asyncpg.Connection | asyncpg.Pool,
    head: int,
    max_lag_events: int,
    *,
    detail: bool,
    log: asyncpg.Connection | asyncpg.Pool | None = None,
) -> dict[str, Any]:
    """Each projection's checkpoint against the log's `head`, what stopped it if anything,
    and the events parked for it; `ready` when none has stopped or lags too far. Without
    `detail` (for the open /readyz), a parked event's stored error and who parked it are
    left out. `conn` is the read side; `log` the event log's database, if another."""
    found = await conn.fetch(_STATUS)
    from_log = await (log or conn).fetch(
        _FROM_THE_LOG,
        [r["position"] for r in found],
        head,
        [r["failed_position"] for r in found],
    )
    rows = [{**dict(r), **dict(f)} for r, f in zip(found, from_log, strict=True)]
    parked: dict[str, list[dict[str, Any]]] = {}
    for r in await conn.fetch(_PARKED):
        entry = {
            "position": r["position"],
            "eventId": str(r["event_id"]),
            "type": r["event_type"],
            "streamId": r["stream_id"],
            "reason": r["reason"],
            "parkedAt": r["parked_at"].isoformat(),
        }
        if detail:
            entry |= {"error": r["error"], "parkedBy": r["parked_by"]}
        parked.setdefault(r["projection"], []).append(entry)
    now = datetime.now(UTC)
    projections: dict[str, Any] = {}
    ready = True
    for row in rows:
        lag_events = max(head - row["position"], 0)
        oldest = row["oldest_unapplied_at"]
        lag_seconds = (now - oldest).total_seconds() if oldest else 0.0
        healthy = row["status"] == "running" and lag_events <= max_lag_events
        ready = ready and healthy
        stopped_at = None
        if row["failed_position"] is not None:
            stopped_at = {
                "position": row["failed_position"],
                "eventId": str(row["failed_event_id"]) if row["failed_event_id"] else None,
                "type": row["failed_type"],
                "streamId": row["failed_stream_id"],
            }
        projections[row["name"]] = {
            "status": row["status"],
            "error": row["error"],
            "stoppedAt": stopped_at,
            "checkpoint": row["position"],
            "head": head,
            "lagEvents": lag_events,
            "lagSeconds": round(max(lag_seconds, 0.0), 3),
            "generation": row["generation"],
            "parked": parked.get(row["name"], []),
            "ready": healthy,
        }
    return {"ready": ready, "head": head, "projections": projections}


@dataclass(frozen=True)
class Parked:
    projection: str
    position: int
    event_type: str
    stream_id: str
    resumed: bool
    """True if the projection had stopped on this event and now goes on."""


async def park(
    conn: asyncpg.Connection,
    name: str,
    position: int,
    reason: str,
    parked_by: str,
    log: asyncpg.Connection | asyncpg.Pool | None = None,
) -> Parked:
    """Record that projection `name` passes over the event at `position`. Refused unless the
    event exists and the projection has not applied it yet (normally: the event it stopped
    on); a stopped projection resumes from it."""
    try:
        by_name(name)
    except LookupError as exc:
        raise ParkRefused(str(exc)) from None
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > MAX_REASON or not is_clean_text(reason, newlines=True):
        raise ParkRefused(f"--reason: say why, in 1 to {MAX_REASON} characters")
    if not parked_by or len(parked_by) > MAX_SUB or not is_clean_text(parked_by):
        raise ParkRefused(f"--by: 1 to {MAX_SUB} printable characters")
    async with conn.transaction():
        projection = await conn.fetchrow(
            "SELECT position, status, failed_position, error FROM eventgraph.projections"
            " WHERE name = $1 FOR UPDATE",
            name,
        )
        if projection is None:
            raise ParkRefused(f"projection {name} is not set up yet (start the service once)")
        if position <= projection["position"]:
            raise ParkRefused(
                f"{name} has already applied position {position} (its checkpoint is"
                f" {projection['position']}): there is nothing to park"
            )
        event = await (log or conn).fetchrow(
            "SELECT event_id, type, stream_id FROM eventgraph.events WHERE position = $1",
            position,
        )
        if event is None:
            raise ParkRefused(f"there is no event at position {position}")
        stopped_here = projection["failed_position"] == position
        inserted = await conn.fetchval(
            "INSERT INTO eventgraph.parked_events (projection, position, event_id, event_type,"
            " stream_id, error, reason, parked_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT DO NOTHING RETURNING true",
            name,
            position,
            event["event_id"],
            event["type"],
            event["stream_id"],
            projection["error"] if stopped_here else None,
            reason,
            parked_by,
        )
        if not inserted:
            raise ParkRefused(f"position {position} is already parked for {name}")
        if stopped_here:
            await conn.execute(
                "UPDATE eventgraph.projections SET status = 'running', error = NULL,"
                " failed_position = NULL, updated_at = now() WHERE name = $1",
                name,
            )
    return Parked(name, position, event["type"], event["stream_id"], stopped_here)


async def resume(conn: asyncpg.Connection, name: str) -> bool:
    """Let a stopped projection try again from its checkpoint (after a fix, or a failure that
    was not the event's fault); True if it had stopped."""
    try:
        by_name(name)
    except LookupError as exc:
        raise ParkRefused(str(exc)) from None
    return bool(
        await conn.fetchval(
            "UPDATE eventgraph.projections SET status = 'running', error = NULL,"
            " failed_position = NULL, updated_at = now() WHERE name = $1 AND status = 'failed'"
            " RETURNING true",
            name,
        )
    )
