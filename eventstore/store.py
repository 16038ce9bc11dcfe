"""The event log on PostgreSQL: append, the reads (commit-safe, by stream, by position), snapshots
and idempotency lookups. Long on purpose: the log's one API, each method a short query."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import orjson

from eventstore.events import (
    ANY,
    AppendResult,
    ConcurrencyError,
    GroupReplayed,
    IdempotencyKeyReused,
    InvalidEventError,
    JSONObject,
    NewEvent,
    RecordedEvent,
)
from eventstore.frontier import LogFrontier
from eventstore.notify import CoalescingNotifier
from eventstore.personal import PersonalData
from eventstore.upcasting import UpcasterRegistry

MAX_EVENTS_PER_APPEND: Final = 1_000
MAX_EVENT_BYTES: Final = 64 * 1024
MAX_READ: Final = 10_000

STREAM_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}")
EVENT_TYPE: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,99}")
IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,200}")

_APPEND = "SELECT * FROM eventgraph.append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
_READ_STREAMS = """
SELECT q.stream_id AS q_stream_id, s.stream_version AS snapshot_version, s.state AS snapshot_state,
       e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.schema_version, e.data,
       '{}'::jsonb AS metadata, e.occurred_at
  FROM unnest($1::text[]) AS q(stream_id)
  LEFT JOIN eventgraph.snapshots s ON s.stream_id = q.stream_id AND s.state_type = $2
  LEFT JOIN eventgraph.events e
         ON e.stream_id = q.stream_id AND e.stream_version > coalesce(s.stream_version, 0)
 ORDER BY q.stream_id, e.stream_version
"""
_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata,"
    " occurred_at"
)

CONNECTION_ERRORS: Final = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions._base.InternalClientError,  # asyncpg's state after a killed connection
)
"""What a query raises when the database, or the connection it was on, has gone away."""

APPEND_SPAN = 1_000
"""How far past a batch the rest of an append that it cut is looked for. One append inserts
its events in one statement, so others' events fall between them only while that statement
runs: a few concurrent appends' worth, far fewer than this. (Several appends in one caller's
transaction, `append(connection=)`, count as one append: keep them close together.)"""

_WHOLE_APPENDS = f"""
WITH batch AS (
    SELECT {_COLUMNS}, transaction_id FROM eventgraph.events
     WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3
), tail AS (
    SELECT max(position) AS last FROM batch
), cut AS (
    -- the first event of the batch whose append goes on after the batch
    SELECT min(b.position) AS at FROM batch b
     WHERE b.transaction_id IN (
        SELECT e.transaction_id FROM eventgraph.events e, tail
         WHERE e.position > tail.last AND e.position <= tail.last + $4)
)
SELECT {_COLUMNS}, cut.at AS cut_at FROM batch, cut ORDER BY position
"""


_STORE_KEYS = """
WITH stored AS (
    INSERT INTO eventgraph.idempotency_keys (key, positions, streams, versions, fingerprint)
    SELECT k,
           array(SELECT x::bigint FROM jsonb_array_elements_text(p::jsonb)
                  WITH ORDINALITY AS e(x, i) ORDER BY i),
           array(SELECT x FROM jsonb_array_elements_text(s::jsonb)
                  WITH ORDINALITY AS e(x, i) ORDER BY i),
           array(SELECT x::integer FROM jsonb_array_elements_text(v::jsonb)
                  WITH ORDINALITY AS e(x, i) ORDER BY i),
           f
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(k, p, s, v, f)
    ON CONFLICT (key) DO NOTHING RETURNING 1
)
SELECT count(*) FROM stored
"""
"""Store the idempotency keys of appends made together (each key's positions, streams and
versions as JSON arrays: PostgreSQL has no arrays of arrays of different lengths). How many
were new: fewer than given means one was used before."""


def _together(
    appends: Sequence[tuple[Mapping[str, tuple[int, Sequence[NewEvent]]], str | None, str | None]],
    owners: Sequence[Sequence[int]],
    positions: Sequence[int],
) -> list[AppendResult]:
    """Each of several appends made in one statement: its events' positions, and its streams'
    versions after it."""
    return [
        AppendResult(
            positions=tuple(positions[i] for i in owned),
            stream_versions={s: v + len(b) for s, (v, b) in streams.items()},
            fingerprint=fingerprint,
        )
        for (streams, _, fingerprint), owned in zip(appends, owners, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    state: JSONObject


def _validate_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
        raise InvalidEventError(
            f"invalid stream id {stream_id!r}: 1 to 200 characters of letters, digits and "
            "._:@/+=-, starting with a letter or digit"
        )
    return stream_id


def _validate(event: NewEvent) -> None:
    if not isinstance(event.type, str) or not EVENT_TYPE.fullmatch(event.type):
        raise InvalidEventError(
            f"invalid event type {event.type!r}: 1 to 100 letters and digits, PascalCase"
        )
    if not isinstance(event.schema_version, int) or not 1 <= event.schema_version <= 10_000:
        raise InvalidEventError(f"invalid schema version {event.schema_version!r}")
    if not isinstance(event.data, Mapping) or not isinstance(event.metadata, Mapping):
        raise InvalidEventError("event data and metadata must be JSON objects")
    if event.occurred_at.tzinfo is None:
        raise InvalidEventError("occurred_at must carry a time zone")


def _dump(value: object) -> str:
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(f"event data is not plain JSON: {exc}") from None


def _arguments(
    expected: Mapping[str, int],
    events: Sequence[tuple[str, NewEvent]],
    idempotency_key: str | None,
    fingerprint: str | None,
) -> tuple[Any, ...]:
    """The append function's arguments: each stream's expected version, then the events in
    the order they are to take positions, each with its stream; all checked first."""
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidEventError("idempotency key: 1 to 200 printable ASCII characters")
    if fingerprint is not None and (not isinstance(fingerprint, str) or len(fingerprint) > 200):
        raise InvalidEventError("fingerprint: at most 200 characters")
    for stream_id, version in expected.items():
        _validate_stream_id(stream_id)
        if not isinstance(version, int) or version < ANY:
            raise InvalidEventError(f"invalid expected version {version!r}")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise InvalidEventError(f"at most {MAX_EVENTS_PER_APPEND} events in one append")
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    event_ids, event_streams, types, schema_versions, data, metadata, occurred = columns
    for stream_id, event in events:
        _validate(event)
        data_json, metadata_json = _dump(event.data), _dump(event.metadata)
        if len(data_json.encode()) + len(metadata_json.encode()) > MAX_EVENT_BYTES:
            raise InvalidEventError(f"an event is larger than {MAX_EVENT_BYTES} bytes")
        event_ids.append(event.event_id)
        event_streams.append(stream_id)
        types.append(event.type)
        schema_versions.append(event.schema_version)
        data.append(data_json)
        metadata.append(metadata_json)
        occurred.append(event.occurred_at)
    return (list(expected), list(expected.values()), idempotency_key, fingerprint, *columns)


def _record(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        data=row["data"],
        metadata=row["metadata"],
        occurred_at=row["occurred_at"],
    )


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool `init`: jsonb as Python values."""
    await conn.set_type_codec(
        "jsonb", encoder=_dump, decoder=orjson.loads, schema="pg_catalog", format="text"
    )


class EventStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        upcasters: UpcasterRegistry | None = None,
        notifier: CoalescingNotifier | None = None,
        personal: PersonalData | None = None,
    ) -> None:
        self.pool = pool
        self.upcasters = upcasters or UpcasterRegistry()
        self.personal = personal
        """Seals personal fields going in and opens them coming out (eventstore/personal.py);
        None: no event carries any."""
        self.frontier = LogFrontier(pool)
        self._notifier = notifier
        self._reads: dict[tuple[object, ...], asyncio.Future[list[RecordedEvent]]] = {}

    async def append(
        self,
        streams: Mapping[str, tuple[int, Sequence[NewEvent]]],
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        connection: asyncpg.Connection | None = None,
    ) -> AppendResult:
        """Append to one or more streams at once, all or nothing.

        `streams` maps each stream id to (expected version, events): ANY, NO_STREAM, or the
        exact version the stream must be at. A stream at another version raises
        ConcurrencyError and nothing is written to any stream. With an idempotency key seen
        before, nothing is written and the first append's result comes back, `replayed`, with
        the `fingerprint` stored with the key (the caller's to compare with its own).
        Given `connection`, the append joins the caller's transaction there."""
        if not streams:
            raise InvalidEventError("nothing to append")
        expected = {stream: version for stream, (version, _) in streams.items()}
        events = [(stream, event) for stream, (_, batch) in streams.items() for event in batch]
        for stream, (_, batch) in streams.items():
            if not batch:
                raise InvalidEventError(f"no events for stream {stream!r}")
        try:
            if self.personal is not None and self.personal.needs_sealing(events):
                # The subject's key is made (or share-locked) in the append's transaction.
                if connection is not None:
                    events = await self.personal.seal(connection, events)
                    args = _arguments(expected, events, idempotency_key, fingerprint)
                    row = await connection.fetchrow(_APPEND, *args)
                else:
                    async with self.pool.acquire() as proxy, proxy.transaction():
                        events = await self.personal.seal(proxy, events)
                        args = _arguments(expected, events, idempotency_key, fingerprint)
                        row = await proxy.fetchrow(_APPEND, *args)
            else:
                args = _arguments(expected, events, idempotency_key, fingerprint)
                row = await (connection or self.pool).fetchrow(_APPEND, *args)
        except asyncpg.PostgresError as exc:
            raise self._translate(exc) from exc
        assert row is not None
        if not row["replayed"] and self._notifier is not None and connection is None:
            self._notifier.committed()
        return AppendResult(
            positions=tuple(row["positions"]),
            stream_versions=dict(zip(row["streams"], row["versions"], strict=True)),
            replayed=row["replayed"],
            fingerprint=row["stored_fingerprint"],
        )

    async def append_together(
        self,
        appends: Sequence[
            tuple[Mapping[str, tuple[int, Sequence[NewEvent]]], str | None, str | None]
        ],
    ) -> list[AppendResult]:
        """Several appends (streams, idempotency key, fingerprint) at once, in the order
        given, each with exact expected versions (a later one's being what the earlier ones
        leave): all or none. A conflict in any fails them all, and so does an idempotency key
        seen before (`GroupReplayed`), since the later ones were decided assuming it would
        be written. One statement appends every event; with idempotency keys, one more
        stores every key in the same transaction (a key already there, or stored meanwhile
        by another process, rolls the whole group back)."""
        expected: dict[str, int] = {}
        reached: dict[str, int] = {}
        events: list[tuple[str, NewEvent]] = []
        owners: list[list[int]] = []
        keys: list[int] = []
        for n, (streams, key, fingerprint) in enumerate(appends):
            owned: list[int] = []
            for stream, (version, batch) in streams.items():
                if not isinstance(version, int) or version < 0 or not batch:
                    raise InvalidEventError("appends made together need exact versions and events")
                if reached.setdefault(stream, version) != version:
                    raise InvalidEventError(f"{stream}: an append does not follow the one before")
                reached[stream] = version + len(batch)
                expected.setdefault(stream, version)
                owned += range(len(events), len(events) + len(batch))
                events += [(stream, event) for event in batch]
            owners.append(owned)
            if key is not None:
                _arguments({}, [], key, fingerprint)  # the key's and fingerprint's checks
                keys.append(n)
        if len({appends[n][1] for n in keys}) < len(keys):
            raise InvalidEventError("one idempotency key twice in appends made together")
        sealing = self.personal is not None and self.personal.needs_sealing(events)
        args = None if sealing else _arguments(expected, events, None, None)
        try:
            if keys or sealing:
                async with self.pool.acquire() as proxy, proxy.transaction():
                    if args is None:
                        assert self.personal is not None
                        events = await self.personal.seal(proxy, events)
                        args = _arguments(expected, events, None, None)
                    row = await proxy.fetchrow(_APPEND, *args)
                    assert row is not None
                    results = _together(appends, owners, row["positions"])
                    mine = [results[n] for n in keys]
                    stored = await proxy.fetchval(
                        _STORE_KEYS,
                        [appends[n][1] for n in keys],
                        [orjson.dumps(r.positions).decode() for r in mine],
                        [orjson.dumps(list(r.stream_versions)).decode() for r in mine],
                        [orjson.dumps(list(r.stream_versions.values())).decode() for r in mine],
                        [appends[n][2] for n in keys],
                    )
                    if stored != len(keys):
                        raise GroupReplayed("an idempotency key in the group was used before")
            else:
                assert args is not None
                row = await self.pool.fetchrow(_APPEND, *args)
                assert row is not None
                results = _together(appends, owners, row["positions"])
        except asyncpg.PostgresError as exc:
            raise self._translate(exc) from exc
        self.committed()
        return results

    def committed(self) -> None:
        """Tell readers that an append made through `connection=` has committed."""
        if self._notifier is not None:
            self._notifier.committed()

    @staticmethod
    def _translate(exc: asyncpg.PostgresError) -> Exception:
        if exc.sqlstate == "EG409":
            return ConcurrencyError(str(getattr(exc, "detail", "") or ""), str(exc))
        if isinstance(exc, asyncpg.UniqueViolationError):
            constraint = getattr(exc, "constraint_name", None)
            if constraint == "events_stream_version_key":
                return ConcurrencyError("", "a concurrent append took the same stream version")
            if constraint == "idempotency_keys_pkey":
                return IdempotencyKeyReused("a concurrent append used the same idempotency key")
            if constraint == "events_event_id_key":
                return InvalidEventError("an event with this event id is already stored")
        if isinstance(exc, asyncpg.DataError | asyncpg.UntranslatableCharacterError):
            return InvalidEventError(f"event rejected by the database: {exc}")
        return exc

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1_000,
        *,
        stream_id: str | None = None,
        types: Sequence[str] | None = None,
        whole_appends: bool = False,
    ) -> list[RecordedEvent]:
        """Events after `after`, in position order, never past a position whose event might
        still commit (see frontier.py): a reader that follows positions skips nothing.

        `whole_appends`: never end inside one append (the events of one command), unless a
        single append is longer than `limit`; what a projector reads, so that a read model's
        position never shows half a command."""
        if not 1 <= limit <= MAX_READ:
            raise InvalidEventError(f"limit must be between 1 and {MAX_READ}")
        if whole_appends and (stream_id is not None or types is not None):
            raise ValueError("whole appends are read from the whole log only")
        # Projectors at the same checkpoint ask for the same events at the same moment: one
        # query in flight serves all of them.
        key = (after, limit, stream_id, tuple(types) if types is not None else None, whole_appends)
        shared = self._reads.get(key)
        if shared is None:
            shared = asyncio.ensure_future(
                self._read_all(after, limit, stream_id, types, whole_appends)
            )
            self._reads[key] = shared
            shared.add_done_callback(lambda _: self._reads.pop(key, None))
        return list(await asyncio.shield(shared))

    async def _read_all(
        self,
        after: int,
        limit: int,
        stream_id: str | None,
        types: Sequence[str] | None,
        whole_appends: bool,
    ) -> list[RecordedEvent]:
        safe = await self.frontier.refresh()
        if after >= safe:
            return []
        if whole_appends:
            rows = await self._read_whole_appends(after, safe, limit)
            return await self._opened([self.upcasters.upcast(_record(r)) for r in rows])
        clauses = ["position > $1", "position <= $2"]
        args: list[object] = [after, safe]
        if stream_id is not None:
            args.append(stream_id)
            clauses.append(f"stream_id = ${len(args)}")
        if types is not None:
            args.append(list(types))
            clauses.append(f"type = any(${len(args)}::text[])")
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM eventgraph.events WHERE {' AND '.join(clauses)}"
            f" ORDER BY position LIMIT ${len(args)}",
            *args,
        )
        return await self._opened([self.upcasters.upcast(_record(r)) for r in rows])

    async def _opened(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """`events` with personal fields opened (None where the person was forgotten)."""
        if self.personal is None or not events:
            return events
        return await self.personal.open(self.pool, events)

    async def _read_whole_appends(self, after: int, safe: int, limit: int) -> list[asyncpg.Record]:
        """Up to `limit` events after `after`, less the trailing ones whose append goes on
        beyond them. Appends interleave while they insert, so a full batch can hold no whole
        append: then read a longer one; an append longer than the longest read comes in
        parts. Empty when the rest of an append is not readable yet (behind an append still
        in flight): it will be soon."""
        while True:
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
                # Planned for these positions every time: a plan cached while the log was
                # nearly empty (a prepared statement goes generic after five runs, and the
                # statistics of a young table say it is tiny) joins the batch to the log by
                # scanning it, which took minutes once 20,000 events had arrived.
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                rows = await conn.fetch(_WHOLE_APPENDS, after, safe, limit, APPEND_SPAN)
            cut = rows[0]["cut_at"] if rows else None
            kept = rows if cut is None else [r for r in rows if r["position"] < cut]
            if kept or len(rows) < limit:
                return kept
            if limit >= MAX_READ:
                return rows
            limit = min(limit * 4, MAX_READ)

    async def read_stream(
        self, stream_id: str, *, connection: asyncpg.Connection | None = None
    ) -> list[RecordedEvent]:
        """One stream's events in version order, to load an aggregate."""
        _validate_stream_id(stream_id)
        rows = await (connection or self.pool).fetch(
            f"SELECT {_COLUMNS} FROM eventgraph.events WHERE stream_id = $1"
            " ORDER BY stream_version",
            stream_id,
        )
        events = [self.upcasters.upcast(_record(r)) for r in rows]
        # For deciding: an aggregate's state (and so a snapshot) never holds personal data.
        return self.personal.erase(events) if self.personal is not None else events

    async def read_streams(
        self, stream_ids: Sequence[str], snapshot_type: str | None = None
    ) -> dict[str, tuple[Snapshot | None, list[RecordedEvent]]]:
        """Several streams in one round trip, to decide a command: each one's snapshot of
        `snapshot_type`, if any, and its events after the snapshot (without their metadata,
        which deciding never needs)."""
        for stream_id in stream_ids:
            _validate_stream_id(stream_id)
        rows = await self.pool.fetch(
            _READ_STREAMS,
            list(stream_ids),
            snapshot_type,
        )
        found: dict[str, tuple[Snapshot | None, list[RecordedEvent]]] = {
            s: (None, []) for s in stream_ids
        }
        for row in rows:
            stream_id = row["q_stream_id"]
            snapshot, events = found[stream_id]
            if snapshot is None and row["snapshot_version"] is not None:
                snapshot = Snapshot(row["snapshot_version"], row["snapshot_state"])
                found[stream_id] = (snapshot, events)
            if row["position"] is not None:
                events.append(self.upcasters.upcast(_record(row)))
        if self.personal is not None:  # see read_stream
            erase = self.personal.erase
            found = {s: (snapshot, erase(events)) for s, (snapshot, events) in found.items()}
        return found

    async def save_snapshot(
        self, stream_id: str, version: int, state_type: str, state: JSONObject
    ) -> None:
        """Keep `state` as the stream's state at `version`, unless a newer one is kept."""
        await self.pool.execute(
            """
            INSERT INTO eventgraph.snapshots (stream_id, stream_version, state_type, state)
            VALUES ($1, $2, $3, $4::text::jsonb)
            ON CONFLICT (stream_id) DO UPDATE
               SET stream_version = excluded.stream_version, state_type = excluded.state_type,
                   state = excluded.state, taken_at = now()
             WHERE snapshots.stream_version < excluded.stream_version
                OR snapshots.state_type <> excluded.state_type
            """,
            stream_id,
            version,
            state_type,
            _dump(state),
        )

    async def read_positions(self, positions: Sequence[int]) -> list[RecordedEvent]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM eventgraph.events WHERE position = any($1::bigint[])"
            " ORDER BY position",
            list(positions),
        )
        return await self._opened([self.upcasters.upcast(_record(r)) for r in rows])

    async def find_idempotent(self, *keys: str) -> tuple[str, AppendResult] | None:
        """The first of `keys` that an append stored, with that append's result; one query
        however many spellings of a key are looked for."""
        row = await self.pool.fetchrow(
            "SELECT key, positions, streams, versions, fingerprint"
            " FROM eventgraph.idempotency_keys WHERE key = any($1::text[])"
            " ORDER BY array_position($1::text[], key) LIMIT 1",
            list(keys),
        )
        if row is None:
            return None
        return row["key"], AppendResult(
            positions=tuple(row["positions"]),
            stream_versions=dict(zip(row["streams"], row["versions"], strict=True)),
            replayed=True,
            fingerprint=row["fingerprint"],
        )

    async def last_position(self) -> int:
        """The highest position appended and committed (readers may not reach it yet)."""
        return int(
            await self.pool.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
        )

    async def head(self) -> int:
        """The highest position that readers can safely reach now."""
        return await self.frontier.refresh()
