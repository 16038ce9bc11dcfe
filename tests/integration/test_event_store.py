"""The event log against real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import pytest

from eventstore.events import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    GroupReplayed,
    IdempotencyKeyReused,
    InvalidEventError,
    NewEvent,
)
from eventstore.migrate import available_migrations, migrate
from eventstore.notify import CoalescingNotifier, Signal, log_listener
from eventstore.store import MAX_EVENT_BYTES, EventStore
from eventstore.upcasting import UpcasterRegistry


def ev(kind: str = "ThingHappened", **data: Any) -> NewEvent:
    return NewEvent(type=kind, data=data)


async def count_events(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM eventgraph.events"))


async def test_append_assigns_stream_versions_and_global_positions(store: EventStore) -> None:
    first = await store.append({"a-1": (NO_STREAM, [ev(n=1), ev(n=2)])})
    second = await store.append({"b-1": (NO_STREAM, [ev(n=3)]), "a-1": (2, [ev(n=4)])})

    assert first.positions == (1, 2) and first.stream_versions == {"a-1": 2}
    assert second.stream_versions == {"b-1": 1, "a-1": 3}
    events = await store.read_all()
    assert [(e.stream_id, e.stream_version, e.data["n"]) for e in events] == [
        ("a-1", 1, 1),
        ("a-1", 2, 2),
        ("b-1", 1, 3),
        ("a-1", 3, 4),
    ]
    assert [e.position for e in events] == [1, 2, 3, 4]
    assert [e.data["n"] for e in await store.read_stream("a-1")] == [1, 2, 4]


async def test_expected_version_no_stream_exact_and_any(store: EventStore) -> None:
    await store.append({"s": (NO_STREAM, [ev()])})
    with pytest.raises(ConcurrencyError):
        await store.append({"s": (NO_STREAM, [ev()])})
    with pytest.raises(ConcurrencyError):
        await store.append({"s": (2, [ev()])})  # ahead of the stream: no gap may be made
    result = await store.append({"s": (ANY, [ev()])})
    assert result.stream_versions == {"s": 2}
    assert [e.stream_version for e in await store.read_stream("s")] == [1, 2]


async def test_many_tasks_appending_the_same_version_exactly_one_wins(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    await store.append({"contended": (NO_STREAM, [ev()])})

    async def attempt(i: int) -> bool:
        try:
            await store.append({"contended": (1, [ev(writer=i), ev(writer=i)])})
            return True
        except ConcurrencyError:
            return False

    outcomes = await asyncio.gather(*(attempt(i) for i in range(32)))
    assert outcomes.count(True) == 1
    stored = await store.read_stream("contended")
    assert [e.stream_version for e in stored] == [1, 2, 3]
    assert stored[1].data["writer"] == stored[2].data["writer"] == outcomes.index(True)


async def test_multi_stream_append_with_one_conflict_writes_nothing(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    await store.append({"order-1": (NO_STREAM, [ev()]), "product-1": (NO_STREAM, [ev()])})
    before = await count_events(pool)
    with pytest.raises(ConcurrencyError):
        await store.append(
            {
                "order-2": (NO_STREAM, [ev()]),
                "product-2": (NO_STREAM, [ev()]),
                "product-1": (0, [ev()]),  # stale: product-1 is at version 1
            }
        )
    assert await count_events(pool) == before
    assert await store.read_stream("order-2") == []
    assert await store.read_stream("product-2") == []


async def test_idempotent_append_returns_the_first_result_and_writes_once(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    first = await store.append({"o": (NO_STREAM, [ev(n=1)])}, idempotency_key="k-1")
    again = await store.append({"o": (NO_STREAM, [ev(n=2)])}, idempotency_key="k-1")
    assert not first.replayed and again.replayed
    assert again.positions == first.positions
    assert again.stream_versions == first.stream_versions
    assert [e.data for e in await store.read_stream("o")] == [{"n": 1}]


async def test_concurrent_appends_with_one_idempotency_key_write_once(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    async def attempt(i: int) -> tuple[int, ...]:
        for _ in range(5):
            try:
                return (
                    await store.append({f"x-{i}": (ANY, [ev()])}, idempotency_key="same")
                ).positions
            except IdempotencyKeyReused:
                continue
        raise AssertionError("never settled")

    results = await asyncio.gather(*(attempt(i) for i in range(16)))
    assert len(set(results)) == 1
    assert await count_events(pool) == 1


async def test_stored_old_schema_version_is_upcast_on_read(store: EventStore) -> None:
    await store.append(
        {"p-1": (NO_STREAM, [NewEvent("PriceSet", {"price_cents": 1999}, schema_version=1)])}
    )

    def upcast_price_set_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {"price": f"{data['price_cents'] // 100}.{data['price_cents'] % 100:02d}"}

    def upcast_price_set_v2_v3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "currency": "EUR"}

    upcasters = UpcasterRegistry()
    upcasters.register("PriceSet", 1, upcast_price_set_v1_v2)
    upcasters.register("PriceSet", 2, upcast_price_set_v2_v3)
    reader = EventStore(store.pool, upcasters)

    for event in [*await reader.read_all(), *await reader.read_stream("p-1")]:
        assert event.schema_version == 3
        assert event.data == {"price": "19.99", "currency": "EUR"}
    stored = await store.pool.fetchrow("SELECT schema_version, data FROM eventgraph.events")
    assert stored is not None and stored["schema_version"] == 1  # the log is never rewritten


async def test_migrations_are_safe_to_run_twice_and_concurrently(server_url: str) -> None:
    name = f"eventgraph_migrate_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        from tests.kit.database import replace_database as _replace_database

        url = _replace_database(server_url, name)
        conns = [await asyncpg.connect(url) for _ in range(4)]
        try:
            applied = await asyncio.gather(*(migrate(c) for c in conns))
            assert sorted(len(a) for a in applied) == [0, 0, 0, len(available_migrations())]
            assert await migrate(conns[0]) == []
            versions = await conns[0].fetch("SELECT version FROM eventgraph.schema_migrations")
            assert sorted(r["version"] for r in versions) == [
                v for v, _, _ in available_migrations()
            ]
        finally:
            for c in conns:
                await c.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


class Unserialisable:
    pass


@pytest.mark.parametrize(
    ("stream_id", "event", "problem"),
    [
        ("", ev(), "stream id"),
        ("x" * 201, ev(), "stream id"),
        ("order 1", ev(), "stream id"),
        ("order\x00", ev(), "stream id"),
        ("ordér-1", ev(), "stream id"),
        ("-leading", ev(), "stream id"),
        ("s", NewEvent("", {}), "event type"),
        ("s", NewEvent("T" * 101, {}), "event type"),
        ("s", NewEvent("order placed", {}), "event type"),
        ("s", NewEvent("Order-Placed", {}), "event type"),
        ("s", NewEvent("orderPlaced", {}), "event type"),
        ("s", NewEvent("Placed", {"x": Unserialisable()}), "not plain JSON"),
        ("s", NewEvent("Placed", {"x": float("nan")}), "not plain JSON"),
        ("s", NewEvent("Placed", {"x": {1, 2}}), "not plain JSON"),
        ("s", NewEvent("Placed", {"x": "y" * MAX_EVENT_BYTES}), "larger than"),
        ("s", NewEvent("Placed", {}, schema_version=0), "schema version"),
        ("s", NewEvent("Placed", {"x": "nul \x00 inside"}), "rejected by the database"),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    store: EventStore, pool: asyncpg.Pool, stream_id: str, event: NewEvent, problem: str
) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        await store.append({stream_id: (NO_STREAM, [event])})
    assert await count_events(pool) == 0


async def test_an_invalid_event_in_a_batch_rejects_the_whole_batch(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    with pytest.raises(InvalidEventError):
        await store.append({"s": (NO_STREAM, [ev(), NewEvent("bad type", {})])})
    with pytest.raises(InvalidEventError):
        await store.append({"s": (NO_STREAM, [ev()] * 1001)})
    assert await count_events(pool) == 0


async def test_concurrent_writers_with_pauses_are_never_skipped_by_a_following_reader(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """16 writers hold their transactions open for random times (and some roll back, leaving
    holes in the positions) while a reader follows positions: it sees every committed event
    exactly once, in position order, and each stream in version order."""
    writers, appends_per_writer = 16, 150
    rng = random.Random(7)
    done = asyncio.Event()
    rolled_back: set[uuid.UUID] = set()

    class Rollback(Exception):
        pass

    async def writer(w: int) -> None:
        async with pool.acquire() as conn:
            for i in range(appends_per_writer):
                batch = [ev(w=w, i=i, k=k) for k in range(rng.choice((1, 1, 1, 3)))]
                pause_before, pause_after = rng.random() * 0.003, rng.random() * 0.004
                try:
                    async with conn.transaction():
                        await conn.execute("SELECT 1")
                        await asyncio.sleep(pause_before)
                        await store.append({f"w{w}-{i % 5}": (ANY, batch)}, connection=conn)
                        await asyncio.sleep(pause_after)
                        if rng.random() < 0.05:
                            raise Rollback
                except Rollback:
                    rolled_back.update(e.event_id for e in batch)
                store.committed()

    seen: list[Any] = []

    async def reader() -> None:
        after = 0
        while True:
            finished = done.is_set()
            batch = await store.read_all(after, 500)
            seen.extend(batch)
            if batch:
                after = batch[-1].position
            elif finished:
                return
            else:
                await asyncio.sleep(0.001)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    # After the writers finish, the reader must drain to the very end.
    await asyncio.wait_for(reading, 30)
    while True:  # holes left by the last rollbacks are proven permanent on a later read
        more = await store.read_all(seen[-1].position if seen else 0, 500)
        if not more and not store.frontier.waiting_on_holes:
            break
        seen.extend(more)

    committed = await pool.fetch("SELECT event_id FROM eventgraph.events ORDER BY position")
    assert len(committed) > writers * appends_per_writer  # the test really did write
    assert rolled_back, "the test should leave holes in the positions"
    positions = [e.position for e in seen]
    assert positions == sorted(set(positions)), "positions strictly increase, none repeated"
    assert [e.event_id for e in seen] == [r["event_id"] for r in committed], "every event once"
    versions: dict[str, list[int]] = defaultdict(list)
    for event in seen:
        versions[event.stream_id].append(event.stream_version)
    for stream, got in versions.items():
        assert got == list(range(1, len(got) + 1)), stream


async def test_a_hole_from_a_rolled_back_append_is_passed_once_proven(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    await store.append({"a": (NO_STREAM, [ev()])})
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append({"b": (NO_STREAM, [ev()])}, connection=conn)  # takes position 2
        await store.append({"c": (NO_STREAM, [ev()])})  # position 3 commits first
        assert [e.position for e in await store.read_all()] == [1]  # 2 is still in flight
        assert store.frontier.waiting_on_holes
        await tx.rollback()
    assert [e.position for e in await store.read_all()] == [1, 3]
    assert not store.frontier.waiting_on_holes


async def test_a_slow_transaction_holding_a_position_is_waited_for_not_skipped(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await store.append({"slow": (NO_STREAM, [ev()])}, connection=conn)  # position 1
        await store.append({"fast": (NO_STREAM, [ev()])})  # position 2
        for _ in range(3):
            assert await store.read_all() == []
        await tx.commit()
    assert [e.stream_id for e in await store.read_all()] == ["slow", "fast"]


async def test_appends_wake_listeners_in_other_processes(
    store: EventStore, pool: asyncpg.Pool, clean_db: str
) -> None:
    remote = Signal()
    listener = log_listener(clean_db, remote)
    listener.start()
    notifier = CoalescingNotifier(pool, Signal())
    notifier.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        waiter = remote.armed()
        writer = EventStore(pool, notifier=notifier)
        await writer.append({"s": (NO_STREAM, [ev()])})
        assert await Signal.wait(waiter, 5)
    finally:
        await notifier.stop()
        await listener.stop()


async def test_listener_reconnects_after_its_connection_is_killed(
    pool: asyncpg.Pool, clean_db: str
) -> None:
    signal = Signal()
    listener = log_listener(clean_db, signal, check_interval=0.05)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), 10)
        killed = await pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'eventgraph-listener' AND datname = current_database()"
        )
        assert killed == 1
        await asyncio.sleep(0.3)
        await asyncio.wait_for(listener.connected.wait(), 10)
        waiter = signal.armed()
        await pool.execute("SELECT pg_notify('eventgraph_log', '')")
        assert await Signal.wait(waiter, 5)
    finally:
        await listener.stop()


async def test_a_hole_held_by_a_transaction_younger_than_the_last_commit_is_not_skipped(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The hole's holder may have a higher transaction id than any completed one, so it is
    invisible to a snapshot's xmin/xmax. Reading past the hole then would lose its event."""
    async with pool.acquire() as older, pool.acquire() as younger:
        older_tx, younger_tx = older.transaction(), younger.transaction()
        await older_tx.start()
        await older.fetchval("SELECT pg_current_xact_id()")  # the older id
        await younger_tx.start()
        await store.append({"held": (NO_STREAM, [ev()])}, connection=younger)  # position 1
        await store.append({"passed": (NO_STREAM, [ev()])}, connection=older)  # position 2
        await older_tx.commit()  # now the latest completed id is below the holder's
        for _ in range(3):
            assert await store.read_all() == []
            await asyncio.sleep(0.01)
        await younger_tx.commit()
    assert [e.stream_id for e in await store.read_all()] == ["held", "passed"]


async def test_a_reader_of_whole_appends_never_ends_inside_one(store: EventStore) -> None:
    first = await store.append({"x": (NO_STREAM, [ev(), ev()]), "y": (NO_STREAM, [ev()])})
    second = await store.append({"z": (NO_STREAM, [ev(), ev()])})
    assert first.positions == (1, 2, 3) and second.positions == (4, 5)

    assert [e.position for e in await store.read_all(0, 4)] == [1, 2, 3, 4]
    assert [e.position for e in await store.read_all(0, 4, whole_appends=True)] == [1, 2, 3]
    assert [e.position for e in await store.read_all(3, 1, whole_appends=True)] == [4, 5]
    # a batch too short for any whole append reads a longer one
    assert [e.position for e in await store.read_all(0, 2, whole_appends=True)] == [1, 2, 3, 4, 5]


async def test_interleaved_appends_are_read_whole_once_both_committed(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as one, pool.acquire() as two:
        first, second = one.transaction(), two.transaction()
        await first.start()
        await second.start()
        await store.append({"a": (NO_STREAM, [ev()])}, connection=one)  # position 1
        await store.append({"b": (NO_STREAM, [ev()])}, connection=two)  # position 2
        await store.append({"c": (NO_STREAM, [ev()])}, connection=one)  # position 3
        await first.commit()
        # 1 and 3 are one transaction; 2 is in flight: no whole append is readable yet
        assert [e.position for e in await store.read_all(0, 10)] == [1]
        assert await store.read_all(0, 10, whole_appends=True) == []
        await second.commit()
    assert [e.position for e in await store.read_all(0, 1, whole_appends=True)] == [1, 2, 3]
    assert [e.position for e in await store.read_all(0, 2, whole_appends=True)] == [1, 2, 3]


async def test_appends_made_together_are_one_transaction_in_the_order_given(
    store: EventStore,
) -> None:
    await store.append({"hot-1": (NO_STREAM, [ev(n=0)])})
    results = await store.append_together(
        [
            ({"order-a": (NO_STREAM, [ev(n=1)]), "hot-1": (1, [ev(n=2)])}, None, None),
            ({"order-b": (NO_STREAM, [ev(n=3), ev(n=4)]), "hot-1": (2, [ev(n=5)])}, None, None),
        ]
    )
    assert [r.positions for r in results] == [(2, 3), (4, 5, 6)]
    assert results[0].stream_versions == {"order-a": 1, "hot-1": 2}
    assert results[1].stream_versions == {"order-b": 2, "hot-1": 3}
    rows = await store.pool.fetch(
        "SELECT stream_id, stream_version, data->>'n' AS n, transaction_id::text AS tx"
        " FROM eventgraph.events WHERE position > 1 ORDER BY position"
    )
    assert [(r["stream_id"], r["stream_version"], r["n"]) for r in rows] == [
        ("order-a", 1, "1"),
        ("hot-1", 2, "2"),
        ("order-b", 1, "3"),
        ("order-b", 2, "4"),
        ("hot-1", 3, "5"),
    ]
    assert len({r["tx"] for r in rows}) == 1


async def test_appends_made_together_fail_together(store: EventStore) -> None:
    await store.append({"hot-2": (NO_STREAM, [ev(n=0)])})
    with pytest.raises(ConcurrencyError):  # the hot stream moved on: neither is written
        await store.append_together(
            [
                ({"order-c": (NO_STREAM, [ev()]), "hot-2": (0, [ev()])}, None, None),
                ({"order-d": (NO_STREAM, [ev()]), "hot-2": (1, [ev()])}, None, None),
            ]
        )
    with pytest.raises(InvalidEventError):  # the second does not follow the first
        await store.append_together(
            [
                ({"hot-2": (1, [ev()])}, None, None),
                ({"hot-2": (1, [ev()])}, None, None),
            ]
        )
    await store.append({"x-1": (NO_STREAM, [ev()])}, idempotency_key="seen")
    with pytest.raises(GroupReplayed):  # with keys: each checked, a replay fails them all
        await store.append_together(
            [
                ({"hot-2": (1, [ev()])}, "fresh", None),
                ({"order-e": (NO_STREAM, [ev()])}, "seen", None),
            ]
        )
    assert await count_events(store.pool) == 2


async def test_keys_of_appends_made_together_are_stored_as_a_lone_append_stores_them(
    store: EventStore,
) -> None:
    """Two statements for the whole group (every event, then every key): each key then
    replays through `append` exactly as if its append had been made alone."""
    await store.append({"hot-3": (NO_STREAM, [ev(n=0)])})
    results = await store.append_together(
        [
            ({"order-f": (NO_STREAM, [ev(n=1)]), "hot-3": (1, [ev(n=2)])}, "k-f", "fp-f"),
            ({"order-g": (NO_STREAM, [ev(n=3), ev(n=4)])}, None, None),
            ({"hot-3": (2, [ev(n=5)]), "order-h": (NO_STREAM, [ev(n=6)])}, "k-h", None),
        ]
    )
    lone = await store.append({"order-i": (NO_STREAM, [ev()])}, idempotency_key="k-i")
    rows = {
        r["key"]: (tuple(r["positions"]), list(r["streams"]), list(r["versions"]), r["fingerprint"])
        for r in await store.pool.fetch("SELECT * FROM eventgraph.idempotency_keys")
    }
    assert rows["k-f"] == (results[0].positions, ["order-f", "hot-3"], [1, 2], "fp-f")
    assert rows["k-h"] == (results[2].positions, ["hot-3", "order-h"], [3, 1], None)
    assert rows["k-i"] == (lone.positions, ["order-i"], [1], None)
    again = await store.append({"order-f": (NO_STREAM, [ev()])}, idempotency_key="k-f")
    assert again.replayed and again.positions == results[0].positions
    assert again.stream_versions == {"order-f": 1, "hot-3": 2} and again.fingerprint == "fp-f"
    before = await count_events(store.pool)
    with pytest.raises(GroupReplayed):  # a key stored by a group fails a later group whole
        await store.append_together([({"order-j": (NO_STREAM, [ev()])}, "k-h", None)])
    with pytest.raises(InvalidEventError):  # one key twice in one group
        await store.append_together(
            [
                ({"order-k": (NO_STREAM, [ev()])}, "k-k", None),
                ({"order-l": (NO_STREAM, [ev()])}, "k-k", None),
            ]
        )
    with pytest.raises(InvalidEventError):  # a key that could not be a client's
        await store.append_together([({"order-m": (NO_STREAM, [ev()])}, "bad key", None)])
    assert await count_events(store.pool) == before


async def test_a_burst_of_appends_does_not_stall_a_reader_whose_plan_was_cached_early(
    server_url: str,
) -> None:
    """A projector reads whole appends with one prepared statement. Run five times while the
    log was young, PostgreSQL caches a generic plan for it, made from the statistics of an
    almost empty table; that plan scanned the log for every event of the batch, and the
    first read after a burst of 20,000 events took minutes (a projector stalled). Each read
    is planned for its own positions now."""
    from eventgraph.runtime import create_pool
    from tests.kit.database import fresh_database

    async with fresh_database(server_url) as url:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        pool = await create_pool(url, min_size=1, max_size=1)  # one connection: one cached plan
        try:
            store = EventStore(pool)
            for i in range(20):
                await store.append({f"young-{i}": (0, [ev(i=i)])})
            for _ in range(10):
                await store.read_all(0, 1_000, whole_appends=True)
            for burst in range(200):
                await store.append({f"b{burst}-{k}": (0, [ev(k=k)]) for k in range(100)})
            async with asyncio.timeout(20):  # minutes with the cached plan, milliseconds now
                read = await store.read_all(0, 1_000, whole_appends=True)
            assert 900 <= len(read) <= 1_000
        finally:
            await pool.close()
