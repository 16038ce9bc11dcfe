"""The command handler: load the streams a command touches (from the cache, a snapshot and
the events after it), decide, check the decision's integrity, append with the expected
versions and the idempotency key; on a version conflict reload and decide again, a bounded
number of times, then CONFLICT.

Long on purpose: the one loop every command goes through."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from application import snapshots
from application.cache import CachedState, StateCache
from application.commands import Policy
from application.decision import CommandResult, Executed, Loaded, aggregate_of, fold
from application.groups import Groups, Member
from application.idempotency import Conflict, Idempotency
from application.locks import StreamLocks
from domain import integrity
from domain.aggregate import AggregateType, DomainEvent
from domain.codec import decode, encode
from domain.errors import DomainError
from domain.values import Actor
from eventstore import ids
from eventstore.events import (
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    GroupReplayed,
    IdempotencyKeyReused,
    InvalidEventError,
    NewEvent,
    RecordedEvent,
)
from eventstore.store import MAX_EVENTS_PER_APPEND, EventStore
from support import metrics, requests

MAX_ATTEMPTS = 40
"""Decide-and-append attempts before CONFLICT. Commands on one stream in one process queue
on a local lock, so conflicts come only from other processes; this bounds the worst case."""


def _count_appended(batch: dict[str, tuple[int, list[NewEvent]]]) -> None:
    for _, events in batch.values():
        for event in events:
            metrics.EVENTS_APPENDED.labels(event.type).inc()


class CommandHandler:
    """Runs a decision against the event log: see the module's docstring."""

    def __init__(
        self,
        store: EventStore,
        clock: Callable[[], datetime] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self.policy = policy or Policy()
        self._locks = StreamLocks()
        self._cache = StateCache()
        self._groups = Groups(self._commit_group)
        self._background = Groups(self._commit_group)
        """The server's own commands (reactions firing timers) group in a chain of their
        own: a storm of them never makes a client's command wait behind their groups."""

    def decode(self, event: RecordedEvent) -> DomainEvent:
        return decode(event.type, event.data, event.occurred_at)

    async def execute(
        self,
        actor: Actor,
        command_name: str,
        streams: Sequence[str],
        decide: Callable[[Loaded], dict[str, list[DomainEvent]]],
        idempotency: Idempotency | None = None,
        new_streams: frozenset[str] | set[str] = frozenset(),
    ) -> Executed:
        # The server's own commands (a reaction's timers) repeat only after a crash: their
        # key is left to the append, which a key used before fails, and the command is then
        # answered with the first result (below). A round trip less for every timer fired.
        if idempotency is not None and not actor.is_system:
            legacy = [idempotency.legacy_key] if idempotency.legacy_key else []
            found = await self.store.find_idempotent(idempotency.key, *legacy)
            if found is not None:
                key, prior = found
                if key != idempotency.key:
                    idempotency.check_legacy(prior)
                idempotency.check(prior)
                return await self._replay(prior)
        # correlationId is the server's, unique per request; requestId is what the
        # client called the request (X-Request-Id), which two clients may share.
        metadata: dict[str, Any] = {
            "correlationId": requests.correlation(),
            "causationId": str(ids.uuid4()),
            "command": command_name,
            "actor": {"id": actor.id, "role": actor.role},
        }
        request_id = requests.current()
        if request_id is not None:
            metadata["requestId"] = request_id
        existing = [s for s in streams if s not in new_streams]
        groups = self._background if actor.is_system else self._groups
        if groups.busy():
            member = Member(
                command_name,
                streams,
                frozenset(new_streams),
                decide,
                idempotency,
                metadata,
                asyncio.get_running_loop().create_future(),
            )
            groups.join(member)
            executed = await member.outcome
            if executed is not None:
                return executed
            return await self._alone(
                command_name, streams, existing, new_streams, decide, idempotency, metadata
            )
        groups.begin()
        try:
            return await self._alone(
                command_name, streams, existing, new_streams, decide, idempotency, metadata
            )
        finally:
            groups.end()

    async def _alone(
        self,
        command_name: str,
        streams: Sequence[str],
        existing: Sequence[str],
        new_streams: Collection[str],
        decide: Callable[[Loaded], dict[str, list[DomainEvent]]],
        idempotency: Idempotency | None,
        metadata: dict[str, Any],
    ) -> Executed:
        """Decide and append one command under its streams' locks, retrying on conflicts."""
        async with self._locks.hold(streams):
            for attempt in range(MAX_ATTEMPTS):
                loaded = await self._load(existing, new_streams, use_cache=attempt == 0)
                try:
                    try:
                        decided = decide(loaded)
                    except DomainError:
                        if not loaded.from_cache:
                            raise
                        self._cache.drop(existing)
                        loaded = await self._load(existing, new_streams, use_cache=False)
                        decided = decide(loaded)
                except DomainError:
                    # A duplicate of a command that has meanwhile succeeded is refused on the
                    # state the first one made (its stock is reserved now): it must get the
                    # first one's result instead, as it would have a moment earlier.
                    if idempotency is None:
                        raise
                    found = await self.store.find_idempotent(idempotency.key)
                    if found is None:
                        raise
                    prior = found[1]
                    idempotency.check(prior)
                    return await self._replay(prior)
                states = {
                    s: fold(aggregate_of(s).evolve, loaded.state(s), decided.get(s, []))
                    for s in streams
                }
                integrity.check(decided, {s: state is not None for s, state in states.items()})
                batch = {
                    s: (loaded.versions[s], [self._new_event(e, metadata) for e in events])
                    for s, events in decided.items()
                    if events
                }
                try:
                    result = await self.store.append(
                        batch,
                        idempotency_key=idempotency.key if idempotency else None,
                        fingerprint=idempotency.fingerprint if idempotency else None,
                    )
                except ConcurrencyError:
                    metrics.APPEND_CONFLICTS.inc()
                    metrics.COMMAND_RETRIES.inc()
                    self._cache.drop(existing)
                    if not loaded.from_cache:
                        await asyncio.sleep(random.random() * 0.002 * (attempt + 1))
                    continue
                except IdempotencyKeyReused:
                    assert idempotency is not None
                    found = await self.store.find_idempotent(idempotency.key)
                    assert found is not None
                    prior = found[1]
                    idempotency.check(prior)
                    return await self._replay(prior)
                if result.replayed:
                    assert idempotency is not None
                    idempotency.check(result)
                    return await self._replay(result)
                for s, events in decided.items():
                    loaded.events[s] += events
                    loaded.since_snapshot[s] += len(events)
                _count_appended(batch)
                await snapshots.save_due(self.store, loaded.since_snapshot, states, result)
                for s in streams:
                    version = result.stream_versions.get(s, loaded.versions[s])
                    self._cache.put(s, CachedState(version, states[s], loaded.since_snapshot[s]))
                return Executed.of(batch, result, states)
        raise Conflict(f"{command_name} kept conflicting with concurrent commands; try again")

    async def _commit_group(self, members: list[Member]) -> None:
        """Decide `members` in turn, each on the state the previous ones left, and append
        those accepted in one transaction (see groups.py); set each one's outcome, or leave
        it unset for the member to run alone."""
        new_streams = frozenset().union(*(m.new_streams for m in members))
        existing = sorted({s for m in members for s in m.streams} - new_streams)
        async with self._locks.hold(existing):
            loaded = await self._load(existing, new_streams, use_cache=True)
            accepted: list[tuple[Member, dict[str, tuple[int, list[NewEvent]]], dict[str, Any]]]
            accepted = []
            events_in_group = 0
            for member in members:
                if member.outcome.done():
                    continue
                try:
                    decided = member.decide(loaded)
                    states = {
                        s: fold(aggregate_of(s).evolve, loaded.state(s), decided.get(s, []))
                        for s in member.streams
                    }
                    integrity.check(decided, {s: state is not None for s, state in states.items()})
                    batch = {
                        s: (
                            loaded.versions[s],
                            [self._new_event(e, member.metadata) for e in events],
                        )
                        for s, events in decided.items()
                        if events
                    }
                except DomainError:
                    continue  # refused on cached state: decided again alone, after the group
                except Exception as exc:
                    member.outcome.set_exception(exc)
                    continue
                size = sum(len(events) for _, events in batch.values())
                if events_in_group + size > MAX_EVENTS_PER_APPEND:
                    continue  # the group is full: this one runs alone, after it
                events_in_group += size
                for s, events in decided.items():
                    if events:
                        loaded.bases[s], loaded.events[s] = states[s], []
                        loaded.versions[s] = max(loaded.versions[s], 0) + len(events)
                        loaded.since_snapshot[s] += len(events)
                accepted.append((member, batch, states))
            if not accepted:
                return
            appends = [
                (batch, m.idempotency.key, m.idempotency.fingerprint)
                if m.idempotency
                else (batch, None, None)
                for m, batch, _ in accepted
            ]
            try:
                results = await self.store.append_together(appends)
            except (
                ConcurrencyError,
                IdempotencyKeyReused,
                GroupReplayed,
                InvalidEventError,
            ) as exc:
                # Refused before anything was written: each member runs alone, and meets
                # (and is answered) whatever it alone would.
                if isinstance(exc, ConcurrencyError):
                    metrics.APPEND_CONFLICTS.inc()
                self._cache.drop(existing)
                return
            except BaseException as exc:
                # Anything else (the connection lost around the commit, a cancellation) may
                # have written the group: running its members again could apply them twice.
                # Each is answered as a lone command would be by the same failure.
                self._cache.drop([*existing, *new_streams])
                unknown = (
                    exc
                    if isinstance(exc, Exception)
                    else ConnectionError(
                        "the outcome of this command is unknown: the server stopped while"
                        " appending it; retry with the same idempotencyKey"
                    )
                )
                for member, _, _ in accepted:
                    if not member.outcome.done():
                        member.outcome.set_exception(unknown)
                raise
            metrics.COMMAND_GROUP_SIZE.observe(len(accepted))
            versions: dict[str, int] = {}
            for (member, batch, states), result in zip(accepted, results, strict=True):
                versions.update(result.stream_versions)
                _count_appended(batch)
                if not member.outcome.done():
                    member.outcome.set_result(Executed.of(batch, result, states))
            touched = {s: loaded.state(s) for s in versions}
            since = {s: loaded.since_snapshot[s] for s in versions}
            await snapshots.save_due(self.store, since, touched, AppendResult((), versions))
            for s, version in versions.items():
                self._cache.put(s, CachedState(version, touched[s], since[s]))

    async def _replay(self, prior: AppendResult) -> Executed:
        """The first result of an idempotency key, read back: nothing appended."""
        metrics.IDEMPOTENT_REPLAYS.inc()
        return Executed(prior, await self.store.read_positions(prior.positions))

    async def _load(
        self, streams: Sequence[str], new_streams: Collection[str], *, use_cache: bool
    ) -> Loaded:
        loaded = Loaded()
        for s in new_streams:
            loaded.versions[s], loaded.bases[s], loaded.events[s] = NO_STREAM, None, []
            loaded.since_snapshot[s] = 0
        missing = list(streams)
        if use_cache:
            missing = []
            for s in streams:
                cached = self._cache.get(s)
                if cached is None:
                    missing.append(s)
                    continue
                loaded.versions[s], loaded.bases[s], loaded.events[s] = (
                    cached.version,
                    cached.state,
                    [],
                )
                loaded.since_snapshot[s] = cached.since_snapshot
                loaded.from_cache = True
        if not missing:
            return loaded
        found = await self.store.read_streams(missing, snapshots.SNAPSHOT_TAG)
        for s in missing:
            snapshot, recorded = found[s]
            aggregate = aggregate_of(s)
            base_version = 0
            loaded.bases[s] = aggregate.initial
            if snapshot is not None:
                base_version = snapshot.version
                loaded.bases[s] = snapshots.state_of(s, snapshot.state)
            loaded.versions[s] = recorded[-1].stream_version if recorded else base_version
            loaded.events[s] = [self.decode(e) for e in recorded]
            loaded.since_snapshot[s] = len(recorded)
        return loaded

    @staticmethod
    def _new_event(event: DomainEvent, metadata: dict[str, Any]) -> NewEvent:
        event_type, schema_version, data = encode(event)
        return NewEvent(event_type, data, schema_version, metadata, occurred_at=event.occurred_at)

    async def with_state(self, executed: Executed, stream: str) -> CommandResult[Any]:
        """The stream's state right after the command (read back for a replayed command)."""
        result = executed.result
        if executed.states is not None:
            state = executed.states[stream]
        else:
            stored = await self.store.read_stream(stream)
            history = [self.decode(e) for e in stored if e.position <= result.last_position]
            aggregate = aggregate_of(stream)
            state = fold(aggregate.evolve, aggregate.initial, history)
        return CommandResult(result.last_position, executed.events, state, result.replayed)

    async def with_state_of(
        self, executed: Executed, aggregate: AggregateType
    ) -> CommandResult[Any]:
        """The state of the stream of `aggregate` that the command wrote to. A replayed
        command that created its subject under an id it drew (placing an order) answers
        with the first attempt's stream, which only its events name."""
        stream = next(
            e.stream_id for e in executed.events if aggregate_of(e.stream_id) is aggregate
        )
        return await self.with_state(executed, stream)
