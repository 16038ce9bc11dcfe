"""Command handling: load the streams a command touches, decide, append with the expected
versions; on a version conflict reload and decide again, a bounded number of times."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import asyncpg
import orjson

from domain import integrity, order, product, values
from domain.codec import DomainEvent, decode, decode_state, encode, encode_state
from domain.errors import DomainError, InvalidInput, NotFound
from domain.ids import OrderId, new_order_id
from domain.order import OrderLine
from domain.values import Actor
from eventstore import ids
from eventstore.events import (
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    IdempotencyKeyReused,
    NewEvent,
    RecordedEvent,
)
from eventstore.store import EventStore

MAX_ATTEMPTS = 40
"""Decide-and-append attempts before CONFLICT. Commands on one stream in one process queue
on a local lock, so conflicts come only from other processes; this bounds the worst case."""

S = TypeVar("S")
log = logging.getLogger(__name__)


class Conflict(DomainError):
    code = "CONFLICT"


CLIENT_KEY = re.compile(r"[\x21-\x7e]{1,200}")
"""An idempotency key as a client sends it: printable ASCII, no spaces."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's idempotency key, scoped to its caller, and what it must mean: the stored
    key is a digest of (caller, key), so any caller id works whatever its characters or
    length; the fingerprint is a digest of (command, canonical arguments)."""

    key: str
    fingerprint: str

    @classmethod
    def of(
        cls, actor: Actor, client_key: str | None, command: str, arguments: object
    ) -> Idempotency | None:
        if client_key is None:
            return None
        if not isinstance(client_key, str) or not CLIENT_KEY.fullmatch(client_key):
            raise InvalidInput("idempotencyKey must be 1 to 200 printable ASCII characters")
        scope = orjson.dumps([actor.id, client_key])
        signature = orjson.dumps([command, arguments], default=str)
        return cls("k2:" + hashlib.sha256(scope).hexdigest(), hashlib.sha256(signature).hexdigest())

    def check(self, result: AppendResult) -> None:
        if result.fingerprint is not None and result.fingerprint != self.fingerprint:
            raise Conflict(
                "this idempotencyKey was already used for a different command or different"
                " arguments; use a new key for a new command"
            )


@dataclass(frozen=True)
class CommandResult(Generic[S]):
    position: int
    events: list[RecordedEvent]
    state: S
    """The aggregate's state after the command."""
    replayed: bool = False


@dataclass(frozen=True)
class Aggregate:
    evolve: Callable[[Any, Any], Any]
    initial: Any
    state_type: type[Any]


AGGREGATES = {
    "product-": Aggregate(product.evolve, product.initial_state, product.Product),
    "order-": Aggregate(order.evolve, order.initial_state, order.Order),
}
SNAPSHOT_TAG = "shop-state-v1"
"""Names the encoding of snapshot states: change it when a state's shape changes, and the old
snapshots are simply not used."""
SNAPSHOT_EVERY = 10
"""Events after a snapshot (or the stream's start) that make a command save a new one."""


def aggregate_of(stream_id: str) -> Aggregate:
    return next(a for prefix, a in AGGREGATES.items() if stream_id.startswith(prefix))


def _fold(evolve: Callable[[Any, Any], Any], initial: Any, events: Sequence[DomainEvent]) -> Any:
    state = initial
    for event in events:
        state = evolve(state, event)
    return state


@dataclass
class _Loaded:
    """The streams a command touches: each one's version, and its state as a base (from a
    snapshot, or the initial state) plus the events after that base."""

    versions: dict[str, int] = field(default_factory=dict)
    bases: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[DomainEvent]] = field(default_factory=dict)
    since_snapshot: dict[str, int] = field(default_factory=dict)
    from_cache: bool = False

    def state(self, stream: str) -> Any:
        return _fold(aggregate_of(stream).evolve, self.bases[stream], self.events[stream])


@dataclass(frozen=True)
class _Executed:
    result: AppendResult
    events: list[RecordedEvent]
    states: dict[str, Any] | None = None
    """Every touched stream's state after the command; None for a replayed command."""


@dataclass(frozen=True, slots=True)
class _Cached:
    version: int
    state: Any
    since_snapshot: int


class StateCache:
    """The latest state this process knows of each recently used stream, so that a command on
    a hot stream (a product every order reserves from) needs no read before its append.

    Never trusted blindly: the append still carries the expected version, so a stream changed
    by another process fails with a conflict, and the command reloads and decides again; a
    decision that fails on cached state is also retried on fresh state before it is answered.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._capacity = capacity

    def get(self, stream: str) -> _Cached | None:
        entry = self._entries.get(stream)
        if entry is not None:
            self._entries.move_to_end(stream)
        return entry

    def put(self, stream: str, entry: _Cached) -> None:
        self._entries[stream] = entry
        self._entries.move_to_end(stream)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, streams: Sequence[str]) -> None:
        for stream in streams:
            self._entries.pop(stream, None)


class StreamLocks:
    """Per-stream locks for commands within one process, taken in sorted order."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, stream_ids: Sequence[str]) -> AsyncIterator[None]:
        ordered = sorted(set(stream_ids))
        for s in ordered:
            lock, users = self._locks.get(s, (asyncio.Lock(), 0))
            self._locks[s] = (lock, users + 1)
        acquired: list[asyncio.Lock] = []
        try:
            for s in ordered:
                lock = self._locks[s][0]
                await lock.acquire()
                acquired.append(lock)
            yield
        finally:
            for lock in acquired:
                lock.release()
            for s in ordered:
                lock, users = self._locks[s]
                if users == 1:
                    del self._locks[s]
                else:
                    self._locks[s] = (lock, users - 1)


class Shop:
    """The shop's commands, as the GraphQL mutations call them."""

    def __init__(self, store: EventStore, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self._locks = StreamLocks()
        self._cache = StateCache()

    # Products ------------------------------------------------------------------------------

    async def register_product(
        self, actor: Actor, sku: str, name: str, unit_price: object, initial_stock: int
    ) -> CommandResult[product.Product]:
        actor.require_staff()
        command = product.RegisterProduct(
            values.sku(sku),
            values.text(name, field="name", maximum=values.MAX_NAME),
            values.money(unit_price, field="unitPrice"),
            values.stock(initial_stock),
            actor,
            self._clock(),
        )
        return await self._product_command(actor, sku, command)

    async def restock_product(
        self, actor: Actor, sku: str, quantity: int
    ) -> CommandResult[product.Product]:
        actor.require_staff()
        values.sku(sku)
        values.quantity(quantity)
        return await self._product_command(
            actor, sku, product.RestockProduct(sku, quantity, actor, self._clock())
        )

    async def _product_command(
        self, actor: Actor, sku: str, command: product.ProductCommand
    ) -> CommandResult[product.Product]:
        stream = product.stream_id(sku)

        def decide(loaded: _Loaded) -> dict[str, list[DomainEvent]]:
            state = loaded.state(stream)
            return {stream: list(product.decide(command, state))}

        result = await self._execute(actor, type(command).__name__, [stream], decide)
        return await self._with_state(result, stream)

    # Orders --------------------------------------------------------------------------------

    async def place_order(
        self, actor: Actor, lines: Sequence[tuple[str, int]], idempotency_key: str | None = None
    ) -> CommandResult[order.Order]:
        requested = order.validate_lines(tuple(lines))
        key = Idempotency.of(
            actor, idempotency_key, "placeOrder", sorted([sku, qty] for sku, qty in requested)
        )
        order_id = new_order_id(ids.uuid4())
        order_stream = order.stream_id(order_id)
        product_streams = {sku: product.stream_id(sku) for sku, _ in requested}

        def decide(loaded: _Loaded) -> dict[str, list[DomainEvent]]:
            now = self._clock()
            catalogue: dict[str, product.Product] = {}
            for sku, stream in product_streams.items():
                state = loaded.state(stream)
                if state is None:
                    raise NotFound(f"no product with sku {sku!r}")
                catalogue[sku] = state
            priced = tuple(OrderLine(sku, qty, catalogue[sku].unit_price) for sku, qty in requested)
            decided: dict[str, list[DomainEvent]] = {
                order_stream: list(
                    order.decide(order.PlaceOrder(order_id, priced, actor, now), None)
                )
            }
            for sku, qty in requested:
                reserve = product.ReserveStock(sku, order_id, qty, now)
                decided[product_streams[sku]] = list(product.decide(reserve, catalogue[sku]))
            return decided

        result = await self._execute(
            actor,
            "PlaceOrder",
            [order_stream, *product_streams.values()],
            decide,
            key,
            new_streams={order_stream},
        )
        return await self._order_result(result)

    async def pay_order(
        self,
        actor: Actor,
        order_id: OrderId,
        amount: object,
        idempotency_key: str | None = None,
    ) -> CommandResult[order.Order]:
        paid = values.money(amount)
        key = Idempotency.of(actor, idempotency_key, "payOrder", [order_id, str(paid)])
        stream = order.stream_id(order_id)

        def decide(loaded: _Loaded) -> dict[str, list[DomainEvent]]:
            state = loaded.state(stream)
            command = order.PayOrder(order_id, paid, actor, self._clock())
            return {stream: list(order.decide(command, state))}

        return await self._order_result(
            await self._execute(actor, "PayOrder", [stream], decide, key)
        )

    async def ship_order(self, actor: Actor, order_id: OrderId) -> CommandResult[order.Order]:
        actor.require_staff()
        return await self._order_with_stock(
            actor,
            order_id,
            "ShipOrder",
            lambda now: order.ShipOrder(order_id, actor, now),
            product.ShipStock,
        )

    async def cancel_order(
        self, actor: Actor, order_id: OrderId, reason: str
    ) -> CommandResult[order.Order]:
        reason = values.text(reason, field="reason", maximum=values.MAX_REASON)
        return await self._order_with_stock(
            actor,
            order_id,
            "CancelOrder",
            lambda now: order.CancelOrder(order_id, reason, actor, now),
            product.ReleaseStock,
        )

    async def _order_with_stock(
        self,
        actor: Actor,
        order_id: OrderId,
        name: str,
        make: Callable[[datetime], order.OrderCommand],
        stock_command: type[product.ShipStock] | type[product.ReleaseStock],
    ) -> CommandResult[order.Order]:
        """Ship or cancel: the order's events and each reserved product's stock move together."""
        stream = order.stream_id(order_id)
        current = await self.store.read_stream(stream)
        if not current:
            raise NotFound(f"no order {order_id!r}")
        placed = self._decode(current[0])
        assert isinstance(placed, order.OrderPlaced)
        product_streams = {line.sku: product.stream_id(line.sku) for line in placed.lines}

        def decide(loaded: _Loaded) -> dict[str, list[DomainEvent]]:
            now = self._clock()
            state = loaded.state(stream)
            decided: dict[str, list[DomainEvent]] = {stream: list(order.decide(make(now), state))}
            for line in placed.lines:
                ps = product_streams[line.sku]
                stock = loaded.state(ps)
                decided[ps] = list(
                    product.decide(stock_command(line.sku, order_id, line.quantity, now), stock)
                )
            return decided

        result = await self._execute(actor, name, [stream, *product_streams.values()], decide)
        return await self._order_result(result)

    # Machinery -----------------------------------------------------------------------------

    def _decode(self, event: RecordedEvent) -> DomainEvent:
        return decode(event.type, event.data, event.occurred_at)

    async def _execute(
        self,
        actor: Actor,
        command_name: str,
        streams: Sequence[str],
        decide: Callable[[_Loaded], dict[str, list[DomainEvent]]],
        idempotency: Idempotency | None = None,
        new_streams: frozenset[str] | set[str] = frozenset(),
    ) -> _Executed:
        if idempotency is not None:
            prior = await self.store.find_idempotent(idempotency.key)
            if prior is not None:
                idempotency.check(prior)
                return _Executed(prior, await self.store.read_positions(prior.positions))
        metadata = {
            "correlationId": str(ids.uuid4()),
            "causationId": str(ids.uuid4()),
            "command": command_name,
            "actor": {"id": actor.id, "role": actor.role},
        }
        existing = [s for s in streams if s not in new_streams]
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
                    prior = await self.store.find_idempotent(idempotency.key)
                    if prior is None:
                        raise
                    idempotency.check(prior)
                    return _Executed(prior, await self.store.read_positions(prior.positions))
                states = {
                    s: _fold(aggregate_of(s).evolve, loaded.state(s), decided.get(s, []))
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
                    self._cache.drop(existing)
                    if not loaded.from_cache:
                        await asyncio.sleep(random.random() * 0.002 * (attempt + 1))
                    continue
                except IdempotencyKeyReused:
                    assert idempotency is not None
                    prior = await self.store.find_idempotent(idempotency.key)
                    assert prior is not None
                    idempotency.check(prior)
                    return _Executed(prior, await self.store.read_positions(prior.positions))
                if result.replayed:
                    assert idempotency is not None
                    idempotency.check(result)
                    return _Executed(result, await self.store.read_positions(result.positions))
                for s, events in decided.items():
                    loaded.events[s] += events
                    loaded.since_snapshot[s] += len(events)
                await self._snapshot(loaded, states, result)
                for s in streams:
                    version = result.stream_versions.get(s, loaded.versions[s])
                    self._cache.put(s, _Cached(version, states[s], loaded.since_snapshot[s]))
                return _Executed(result, self._recorded(batch, result), states)
        raise Conflict(f"{command_name} kept conflicting with concurrent commands; try again")

    async def _load(
        self, streams: Sequence[str], new_streams: Collection[str], *, use_cache: bool
    ) -> _Loaded:
        loaded = _Loaded()
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
        found = await self.store.read_streams(missing, SNAPSHOT_TAG)
        for s in missing:
            snapshot, recorded = found[s]
            aggregate = aggregate_of(s)
            base_version = 0
            loaded.bases[s] = aggregate.initial
            if snapshot is not None:
                base_version = snapshot.version
                loaded.bases[s] = decode_state(aggregate.state_type, snapshot.state)
            loaded.versions[s] = recorded[-1].stream_version if recorded else base_version
            loaded.events[s] = [self._decode(e) for e in recorded]
            loaded.since_snapshot[s] = len(recorded)
        return loaded

    async def _snapshot(
        self, loaded: _Loaded, states: dict[str, Any], result: AppendResult
    ) -> None:
        """Save the state of streams that have grown long since their last snapshot. Best
        effort: a snapshot is only ever a shortcut."""
        for s, count in loaded.since_snapshot.items():
            if count >= SNAPSHOT_EVERY and states[s] is not None:
                try:
                    await self.store.save_snapshot(
                        s, result.stream_versions[s], SNAPSHOT_TAG, encode_state(states[s])
                    )
                    loaded.since_snapshot[s] = 0
                except (asyncpg.PostgresError, OSError) as exc:
                    log.warning("could not save a snapshot of %s: %s", s, exc)

    @staticmethod
    def _new_event(event: DomainEvent, metadata: dict[str, Any]) -> NewEvent:
        event_type, schema_version, data = encode(event)
        return NewEvent(event_type, data, schema_version, metadata, occurred_at=event.occurred_at)

    @staticmethod
    def _recorded(
        batch: dict[str, tuple[int, list[NewEvent]]], result: AppendResult
    ) -> list[RecordedEvent]:
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
        return sorted(recorded, key=lambda r: r.position)

    async def _with_state(self, executed: _Executed, stream: str) -> CommandResult[Any]:
        """The stream's state right after the command (read back for a replayed command)."""
        result = executed.result
        if executed.states is not None:
            state = executed.states[stream]
        else:
            stored = await self.store.read_stream(stream)
            history = [self._decode(e) for e in stored if e.position <= result.last_position]
            aggregate = aggregate_of(stream)
            state = _fold(aggregate.evolve, aggregate.initial, history)
        return CommandResult(result.last_position, executed.events, state, result.replayed)

    async def _order_result(self, executed: _Executed) -> CommandResult[order.Order]:
        stream = next(e.stream_id for e in executed.events if e.stream_id.startswith("order-"))
        return await self._with_state(executed, stream)
