"""Reactions: the event-driven half of the application, a process manager kit with durable
timers. A reaction follows the log as a projection does, but what it produces is not a read
model: it is commands, issued later (a deadline) or at once (a timer due now).

- `react(event)` is pure: from one event, the effects on the reaction's timers, `Schedule`
  (a key, when, and JSON for the command) or `Cancel` (a key). Scheduling a key again moves
  it; the last effect on a key in a batch wins.
- The runner applies a batch of events' effects to `eventgraph.timers` and moves the
  reaction's checkpoint in the same transaction, so every event is reacted to exactly once.
- Due timers fire, oldest first, at a bounded rate: `command(timer)` through the normal
  command path (`Shop.handle`), with an idempotency key derived from the timer (reaction,
  key, the position that scheduled it). A crash after the command but before the timer is
  deleted fires it again, and the command store answers with the first result: no effect is
  lost or repeated. A command refused by the domain (the order was paid meanwhile) is done
  too; any other failure is retried with backoff, never dropped.
- One process leads each reaction (a session advisory lock, as for projections); standbys
  take over when its connection dies. Timers and checkpoints live beside the log (the
  command side), whatever the read side's database.

Long on purpose: following, firing and leading belong together."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

import asyncpg
import orjson

from application.commands import Command
from application.idempotency import Conflict
from domain.aggregate import DomainEvent
from domain.codec import decode
from domain.errors import AlreadyExists, InvalidState, NotYet
from eventstore.events import RecordedEvent
from eventstore.leadership import wait_to_lead
from eventstore.notify import Signal
from eventstore.store import CONNECTION_ERRORS, EventStore, init_connection
from support import metrics
from support.background import Backoff, reconnecting

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Fire timer `key` at `due` (again, if it exists: it moves), carrying `data`."""

    key: str
    due: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Timer `key` is no longer wanted (nothing happens if there is none)."""

    key: str


Effect = Schedule | Cancel


@dataclass(frozen=True, slots=True)
class Timer:
    reaction: str
    key: str
    due: datetime
    data: dict[str, Any]
    scheduled_at: int
    """The position of the event that (re)scheduled it: a timer moved by a later event is
    another timer, with another idempotency key."""
    attempts: int = 0

    @property
    def idempotency_key(self) -> str:
        """The key the command it fires carries: the same for every firing of this timer."""
        digest = hashlib.sha256(orjson.dumps([self.reaction, self.key, self.scheduled_at]))
        return "timer:" + digest.hexdigest()


class Reaction(Protocol):
    name: ClassVar[str]
    """Unique, stable: its checkpoint and timers are kept under it."""
    events: ClassVar[tuple[type, ...]]
    """The event types it reacts to (the runner skips others without decoding them)."""

    def react(self, event: DomainEvent, recorded: RecordedEvent) -> Sequence[Effect]:
        """Pure: what this event does to the reaction's timers."""
        ...

    def command(self, timer: Timer) -> Command[Any]:
        """The command a due timer issues; it must carry `timer.idempotency_key`."""
        ...


class Handles(Protocol):
    """Where commands go (`application.shop.Shop`)."""

    async def handle(self, command: Command[Any]) -> Any: ...


_CHECKPOINT = "SELECT position, status FROM eventgraph.reactions WHERE name = $1"
_SCHEDULE = """
INSERT INTO eventgraph.timers AS t (reaction, key, due_at, data, scheduled_at)
SELECT $1, k, d, j::jsonb, p FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bigint[])
    AS u(k, d, j, p)
ON CONFLICT (reaction, key) DO UPDATE SET due_at = excluded.due_at, data = excluded.data,
    scheduled_at = excluded.scheduled_at, attempts = 0, last_error = NULL
"""
_DUE = """
SELECT key, due_at, data, scheduled_at, attempts FROM eventgraph.timers
 WHERE reaction = $1 AND due_at <= $2 ORDER BY due_at, key LIMIT $3
"""
_DONE = """
DELETE FROM eventgraph.timers t USING unnest($2::text[], $3::bigint[]) AS u(k, p)
 WHERE t.reaction = $1 AND t.key = u.k AND t.scheduled_at = u.p
"""
_RETRY = """
UPDATE eventgraph.timers t SET attempts = t.attempts + 1, due_at = u.due, last_error = u.error
  FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::text[]) AS u(k, p, due, error)
 WHERE t.reaction = $1 AND t.key = u.k AND t.scheduled_at = u.p
"""


async def ensure_reaction(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> None:
    """Its checkpoint, from the start of the log, once."""
    await conn.execute(
        "INSERT INTO eventgraph.reactions (name) VALUES ($1) ON CONFLICT DO NOTHING", name
    )


def retry_delay(attempts: int) -> timedelta:
    """After a failed firing: 1 s, doubling, at most 5 minutes."""
    return timedelta(seconds=min(2 ** min(attempts, 9), 300))


class ReactionRunner:
    """Leads one reaction while this process holds its lock: follows the log into timers and
    fires them when due. `step` and `fire_due` each take the leader's connection, so a test
    can drive them with its own clock."""

    def __init__(
        self,
        reaction: Reaction,
        dsn: str,
        store: EventStore,
        commands: Handles,
        log_signal: Signal,
        *,
        clock: Clock | None = None,
        batch_size: int = 1_000,
        fire_batch: int = 200,
        concurrency: int = 32,
        rate: float = 2_000.0,
        poll_interval: float = 0.5,
        standby_interval: float = 0.5,
        retry_failed_after: float = 30.0,
    ) -> None:
        self.reaction = reaction
        self._dsn = dsn
        self._store = store
        self._commands = commands
        self._signal = log_signal
        self._clock = clock or (lambda: datetime.now(UTC))
        self._batch_size = batch_size
        self._fire_batch = fire_batch
        self._concurrency = concurrency
        self._rate = rate
        self._poll_interval = poll_interval
        self._standby_interval = standby_interval
        self._retry_failed_after = retry_failed_after
        self._types = frozenset(t.__name__ for t in reaction.events)
        self._failed_at = 0.0
        self._loop = reconnecting(
            f"eventgraph-reaction-{reaction.name}",
            self._session,
            expected=(*CONNECTION_ERRORS, asyncpg.PostgresError),
        )
        self.role = "starting"
        self.error: str | None = None

    @property
    def name(self) -> str:
        return self.reaction.name

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _session(self, backoff: Backoff) -> None:
        self.role = "connecting"
        conn = await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": f"eventgraph-reaction-{self.name}"},
        )
        try:
            await init_connection(conn)
            await ensure_reaction(conn, self.name)
            self.role = "standby"
            await wait_to_lead(conn, f"eventgraph.reaction.{self.name}", self._standby_interval)
            self.role = "leader"
            log.info("reaction %s: leading", self.name)
            await self._lead(conn, backoff)
        finally:
            self.role = "reconnecting"
            if not conn.is_closed():
                conn.terminate()

    async def _lead(self, conn: asyncpg.Connection, backoff: Backoff) -> None:
        while True:
            armed = self._signal.armed()
            started = time.monotonic()
            moved = await self.step(conn)
            fired = await self.fire_due(conn)
            backoff.reset()  # a whole round done: a failure after this is a new one
            if fired:
                # The bound on the rate: `fired` commands take at least fired / rate seconds.
                await asyncio.sleep(max(fired / self._rate - (time.monotonic() - started), 0))
            if moved or fired:
                continue
            await Signal.wait(armed, await self._until_next_due(conn))

    async def _until_next_due(self, conn: asyncpg.Connection) -> float:
        due = await conn.fetchval(
            "SELECT min(due_at) FROM eventgraph.timers WHERE reaction = $1", self.name
        )
        if due is None:
            return self._poll_interval
        wait: float = (due - self._clock()).total_seconds()
        return min(max(wait, 0.0), self._poll_interval)

    async def step(self, conn: asyncpg.Connection) -> bool:
        """React to the next batch of events after the checkpoint, if any: their effects on
        the timers and the new checkpoint in one transaction. True if the checkpoint moved."""
        row = await conn.fetchrow(_CHECKPOINT, self.name)
        if row is None:
            await ensure_reaction(conn, self.name)
            return True
        if row["status"] == "failed":
            if time.monotonic() - self._failed_at < self._retry_failed_after:
                return False
            log.info("reaction %s: trying its failed event again", self.name)
        seen = row["position"]
        events = await self._store.read_all(seen, self._batch_size, whole_appends=True)
        if not events:
            return False
        effects: dict[str, tuple[Effect, int]] = {}
        try:
            for recorded in events:
                if recorded.type not in self._types:
                    continue
                event = decode(recorded.type, recorded.data, recorded.occurred_at)
                for effect in self.reaction.react(event, recorded):
                    effects[effect.key] = (effect, recorded.position)
        except Exception as exc:
            return await self._fail(conn, seen, recorded, exc)
        async with conn.transaction():
            current = await conn.fetchval(
                "SELECT position FROM eventgraph.reactions WHERE name = $1 FOR UPDATE", self.name
            )
            if current != seen:
                return True  # another leader moved it (this one's lock was lost): start again
            schedules = [(e, p) for e, p in effects.values() if isinstance(e, Schedule)]
            cancels = [e.key for e, _ in effects.values() if isinstance(e, Cancel)]
            if schedules:
                await conn.execute(
                    _SCHEDULE,
                    self.name,
                    [e.key for e, _ in schedules],
                    [e.due for e, _ in schedules],
                    [orjson.dumps(dict(e.data)).decode() for e, _ in schedules],
                    [p for _, p in schedules],
                )
            if cancels:
                await conn.execute(
                    "DELETE FROM eventgraph.timers WHERE reaction = $1 AND key = any($2::text[])",
                    self.name,
                    cancels,
                )
            await conn.execute(
                "UPDATE eventgraph.reactions SET position = $2, status = 'running', error = NULL,"
                " failed_position = NULL, updated_at = now() WHERE name = $1",
                self.name,
                events[-1].position,
            )
        if row["status"] == "failed":
            self.error = None
            log.info("reaction %s: running again", self.name)
        metrics.REACTION_EVENTS.labels(self.name).inc(len(events))
        return True

    async def _fail(
        self, conn: asyncpg.Connection, seen: int, event: RecordedEvent, exc: Exception
    ) -> bool:
        """A reaction that cannot react to an event stops there (it never skips one): the
        checkpoint stays before it, the error is shown, and it is tried again now and then
        (a fixed version of the code, deployed, goes on from it)."""
        self.error = (
            f"cannot react to {event.type} at position {event.position}"
            f" (stream {event.stream_id} v{event.stream_version}): {exc!r}"
        )
        self._failed_at = time.monotonic()
        await conn.execute(
            "UPDATE eventgraph.reactions SET status = 'failed', error = $2, failed_position = $3,"
            " updated_at = now() WHERE name = $1 AND position = $4",
            self.name,
            self.error,
            event.position,
            seen,
        )
        log.error("reaction %s stopped: %s", self.name, self.error)
        return False

    async def fire_due(self, conn: asyncpg.Connection, limit: int | None = None) -> int:
        """Fire the timers due now, oldest first, at most `limit` (one batch by default),
        `concurrency` at a time; delete each one whose command was applied, replayed or
        refused, and push back each that failed. Returns how many were fired."""
        now = self._clock()
        rows = await conn.fetch(_DUE, self.name, now, limit or self._fire_batch)
        if not rows:
            return 0
        timers = [
            Timer(
                self.name,
                r["key"],
                r["due_at"],
                orjson.loads(r["data"]) if isinstance(r["data"], str) else r["data"],
                r["scheduled_at"],
                r["attempts"],
            )
            for r in rows
        ]
        gate = asyncio.Semaphore(self._concurrency)

        async def fire(timer: Timer) -> str | None:
            async with gate:
                return await self._fire(timer)

        failures = await asyncio.gather(*(fire(t) for t in timers))
        done = [t for t, error in zip(timers, failures, strict=True) if error is None]
        failed = [(t, e) for t, e in zip(timers, failures, strict=True) if e is not None]
        if done:
            await conn.execute(
                _DONE, self.name, [t.key for t in done], [t.scheduled_at for t in done]
            )
        if failed:
            await conn.execute(
                _RETRY,
                self.name,
                [t.key for t, _ in failed],
                [t.scheduled_at for t, _ in failed],
                [now + retry_delay(t.attempts) for t, _ in failed],
                [e for _, e in failed],
            )
        return len(timers)

    async def _fire(self, timer: Timer) -> str | None:
        """One timer's command; None when it is done with, else why it failed."""
        try:
            command = self.reaction.command(timer)
            if getattr(command, "idempotency_key", None) != timer.idempotency_key:
                command = replace(command, idempotency_key=timer.idempotency_key)  # type: ignore[type-var]
            result = await self._commands.handle(command)
        except (Conflict, NotYet) as exc:
            # Busy, or asked early (this clock behind the one that found it due): again soon.
            return self._failed(timer, exc)
        except (InvalidState, AlreadyExists) as exc:
            # Refused for good on the state it found (the order was paid or cancelled
            # meanwhile): what the timer was for cannot happen, or has happened already.
            metrics.TIMERS_FIRED.labels(self.name, "refused").inc()
            log.info("reaction %s: timer %s refused: %s", self.name, timer.key, exc)
            return None
        except Exception as exc:
            return self._failed(timer, exc)
        outcome = "replayed" if getattr(result, "replayed", False) else "applied"
        metrics.TIMERS_FIRED.labels(self.name, outcome).inc()
        return None

    def _failed(self, timer: Timer, exc: Exception) -> str:
        """Anything but a final refusal (the database away, a conflict, a bug: NOT_FOUND,
        FORBIDDEN) keeps the timer, tried again with backoff and shown as retrying."""
        metrics.TIMERS_FAILED.labels(self.name).inc()
        error = f"{type(exc).__name__}: {exc}".replace("\x00", "")[:500]
        log.warning(
            "reaction %s: timer %s failed (attempt %d), trying again in %s: %s",
            self.name,
            timer.key,
            timer.attempts + 1,
            retry_delay(timer.attempts),
            error,
        )
        return error


async def reaction_status(
    conn: asyncpg.Connection | asyncpg.Pool,
    head: int,
    active: Collection[str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Each reaction's checkpoint against the log's `head`, its timers and what stopped it,
    for `eventgraph projections` and /readyz (beside the projections). A reaction not in
    `active` (turned off by the settings: it keeps its checkpoint and timers for when it is
    on again) shows as `off`."""
    now = now or datetime.now(UTC)
    rows = await conn.fetch(
        """
        SELECT r.name, r.position, r.status, r.error, r.failed_position,
               count(t.key) AS pending,
               min(t.due_at) FILTER (WHERE t.due_at <= $1) AS oldest_due,
               count(t.key) FILTER (WHERE t.attempts > 0) AS retrying
          FROM eventgraph.reactions r LEFT JOIN eventgraph.timers t ON t.reaction = r.name
         GROUP BY r.name ORDER BY r.name
        """,
        now,
    )
    return {
        r["name"]: {
            "status": r["status"] if active is None or r["name"] in active else "off",
            "error": r["error"],
            "stoppedAt": r["failed_position"],
            "checkpoint": r["position"],
            "head": head,
            "lagEvents": max(head - r["position"], 0),
            "timersPending": r["pending"],
            "timersRetrying": r["retrying"],
            "oldestOverdueSeconds": round((now - r["oldest_due"]).total_seconds(), 3)
            if r["oldest_due"]
            else 0.0,
        }
        for r in rows
    }
