"""Personal data keys (eventstore/personal.py) against a real PostgreSQL: sealing and opening
fields, forgetting, a key made in the caller's transaction, the cache's bounded lifetime,
master key rotation, and no plaintext or key in the clear in the key table."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from eventstore.events import ANY, InvalidEventError, NewEvent
from eventstore.migrate import migrate
from eventstore.personal import (
    MasterKey,
    MasterKeyError,
    PersonalData,
    PersonalFields,
    PersonalKeys,
    is_envelope,
    new_master_key_text,
    open_envelope,
    seal,
)
from eventstore.store import EventStore

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London"}


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(clean_db)
    await migrate(connection)
    yield connection
    await connection.close()


def keys(*masters: MasterKey, ttl: float = 30.0, clock: list[float] | None = None) -> PersonalKeys:
    now = clock if clock is not None else [0.0]
    return PersonalKeys(
        masters or (MasterKey.from_text(new_master_key_text()),), ttl=ttl, clock=lambda: now[0]
    )


async def sealed(
    pk: PersonalKeys, conn: asyncpg.Connection, subject: str
) -> tuple[uuid.UUID, dict[str, Any]]:
    event_id = uuid.uuid4()
    async with conn.transaction():
        data = await pk.seal_fields(
            conn,
            subject,
            event_id,
            {"orderId": "o1", "address": ADDRESS, "email": None},
            ("address", "email"),
        )
    return event_id, data


async def test_sealed_fields_open_only_with_the_key_and_for_their_own_event(
    conn: asyncpg.Connection,
) -> None:
    pk = keys()
    event_id, data = await sealed(pk, conn, "cust-1")
    assert data["orderId"] == "o1" and data["email"] is None, "only personal, non-null fields"
    assert is_envelope(data["address"]) and "Lovelace" not in str(data)
    [opened] = await pk.open_fields(conn, [(event_id, data)])
    assert opened == {"orderId": "o1", "address": ADDRESS, "email": None}

    [moved] = await pk.open_fields(conn, [(uuid.uuid4(), data)])
    assert moved["address"] is None, "an envelope moved to another event opens nothing"
    tampered = dict(data["address"], sealed=data["address"]["sealed"][:-4] + "AAAA")
    [bad] = await pk.open_fields(conn, [(event_id, {"address": tampered})])
    assert bad == {"address": None}
    [garbage] = await pk.open_fields(
        conn, [(event_id, {"address": {"$personal": 1, "key": "nope", "sealed": "!!"}})]
    )
    assert garbage == {"address": None}, "a malformed envelope is erased, not an error"


async def test_forgetting_erases_every_field_of_that_subject_only(
    conn: asyncpg.Connection,
) -> None:
    pk = keys()
    ada = [await sealed(pk, conn, "ada") for _ in range(3)]
    bob = await sealed(pk, conn, "bob")
    async with conn.transaction():
        assert await pk.forget(conn, "ada")
        assert not await pk.forget(conn, "nobody")
    opened = await pk.open_fields(conn, [*ada, bob])
    assert [o["address"] for o in opened] == [None, None, None, ADDRESS]

    another_process = keys(*pk.masters)  # nothing cached: reads the table
    assert [o["address"] for o in await another_process.open_fields(conn, ada)] == [None] * 3
    async with conn.transaction():
        assert not await pk.forget(conn, "ada"), "twice is harmless"

    again = await sealed(pk, conn, "ada")  # back as a customer: a new key
    assert (await pk.open_fields(conn, [again]))[0]["address"] == ADDRESS
    assert (await pk.open_fields(conn, ada[:1]))[0]["address"] is None, "old data stays erased"


async def test_another_process_stops_opening_a_forgotten_key_within_the_ttl(
    conn: asyncpg.Connection,
) -> None:
    clock = [0.0]
    writer, reader = keys(ttl=30, clock=clock), None
    reader = keys(*writer.masters, ttl=30, clock=clock)
    one = await sealed(writer, conn, "ada")
    assert (await reader.open_fields(conn, [one]))[0]["address"] == ADDRESS  # now cached
    async with conn.transaction():
        await writer.forget(conn, "ada")
    clock[0] = 29.0
    assert (await reader.open_fields(conn, [one]))[0]["address"] == ADDRESS, "cached, for now"
    clock[0] = 31.0
    assert (await reader.open_fields(conn, [one]))[0]["address"] is None


async def test_a_key_is_made_in_the_callers_transaction_and_a_forget_waits_for_it(
    clean_db: str, conn: asyncpg.Connection
) -> None:
    pk = keys()
    other = await asyncpg.connect(clean_db)
    try:
        tx = conn.transaction()
        await tx.start()
        await pk.for_write(conn, "ada")
        await tx.rollback()
        assert await conn.fetchval("SELECT count(*) FROM eventgraph.personal_keys") == 0

        async with conn.transaction():
            key = await pk.for_write(conn, "ada")  # made, committed
        async with conn.transaction():
            assert (await pk.for_write(conn, "ada")).id == key.id
            forgetting = asyncio.create_task(pk.forget(other, "ada"))
            await asyncio.sleep(0.3)
            assert not forgetting.done(), "a forget waits for the command sealing with the key"
        assert await forgetting
        again = await pk.for_write(conn, "ada")
        assert again.id != key.id
    finally:
        await other.close()


async def test_concurrent_first_uses_share_one_key(clean_db: str, conn: asyncpg.Connection) -> None:
    pk = keys()
    conns = [await asyncpg.connect(clean_db) for _ in range(8)]
    try:

        async def first_use(c: asyncpg.Connection) -> uuid.UUID:
            async with c.transaction():
                return (await pk.for_write(c, "ada")).id

        ids = await asyncio.gather(*(first_use(c) for c in conns))
        assert len(set(ids)) == 1
    finally:
        for c in conns:
            await c.close()


async def test_the_key_table_holds_no_key_or_plaintext_in_the_clear(
    conn: asyncpg.Connection,
) -> None:
    pk = keys()
    key = None
    async with conn.transaction():
        key = await pk.for_write(conn, "ada")
    dump = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM eventgraph.personal_keys t")
    assert key.secret.hex() not in dump and pk.master.secret.hex() not in dump
    assert "Lovelace" not in dump
    assert "secret" not in repr(key) and key.secret.hex() not in repr(pk.master) + repr(key)


async def test_rotating_the_master_key_rewraps_every_data_key(conn: asyncpg.Connection) -> None:
    old = MasterKey.from_text(new_master_key_text())
    before = keys(old)
    data = [await sealed(before, conn, f"cust-{n}") for n in range(7)]
    new = MasterKey.from_text(new_master_key_text())
    rotating = keys(new, old)
    assert await rotating.rotate(conn, batch=3) == 7
    assert await rotating.rotate(conn) == 0, "nothing left on the old master"
    masters = await conn.fetchval(
        "SELECT array_agg(DISTINCT master_id) FROM eventgraph.personal_keys"
    )
    assert masters == [new.id]
    only_new = keys(new)
    assert [o["address"] for o in await only_new.open_fields(conn, data)] == [ADDRESS] * 7
    only_old = keys(old)
    assert [o["address"] for o in await only_old.open_fields(conn, data)] == [None] * 7


async def test_a_key_under_a_lost_master_is_erased_data_and_is_replaced_on_write(
    conn: asyncpg.Connection,
) -> None:
    lost = keys()
    one = await sealed(lost, conn, "ada")
    current = keys()
    assert (await current.open_fields(conn, [one]))[0]["address"] is None
    two = await sealed(current, conn, "ada")
    assert (await current.open_fields(conn, [two]))[0]["address"] == ADDRESS


def test_master_keys_are_checked_and_never_shown() -> None:
    for bad in ("", "short", "!!!not base64!!!", new_master_key_text() + "AAAA"):
        with pytest.raises(MasterKeyError) as raised:
            MasterKey.from_text(bad)
        assert bad not in str(raised.value) or bad == ""
    text = new_master_key_text()
    master = MasterKey.from_text(text)
    assert text not in repr(master) and master.secret.hex() not in repr(master)
    assert (
        MasterKey.from_text(text).id == master.id != MasterKey.from_text(new_master_key_text()).id
    )


def test_an_envelope_names_its_key_not_its_plaintext() -> None:
    from eventstore.personal import DataKey

    key = DataKey(uuid.uuid4(), b"k" * 32)
    event_id = uuid.uuid4()
    envelope = seal(key, "ada", event_id, "ada@example.com")
    assert "ada@example.com" not in str(envelope) and envelope["key"] == str(key.id)
    assert open_envelope(key, event_id, envelope) == "ada@example.com"
    assert open_envelope(None, event_id, envelope) is None
    assert open_envelope(DataKey(key.id, b"x" * 32), event_id, envelope) is None


SPEC = {"OrderPlaced": PersonalFields("customerId", ("shippingAddress", "email"))}


def placed(customer: str, email: str | None = "ada@example.com") -> NewEvent:
    return NewEvent(
        "OrderPlaced",
        {"orderId": "o", "customerId": customer, "shippingAddress": ADDRESS, "email": email},
    )


async def every_table_as_text(conn: asyncpg.Connection) -> str:
    """Every row of every table of every schema but the catalogue's, as text."""
    tables = await conn.fetch(
        "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS t FROM pg_tables"
        " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
    )
    dumps = [
        await conn.fetchval(f"SELECT coalesce(string_agg(x::text, ' '), '') FROM {r['t']} x")
        for r in tables
    ]
    return " ".join(dumps)


async def test_the_store_seals_on_append_opens_on_read_and_erases_for_deciding(
    pool: asyncpg.Pool, conn: asyncpg.Connection
) -> None:
    store = EventStore(pool, personal=PersonalData(keys(), SPEC))
    await store.append({"order-1": (ANY, [placed("ada")])})
    await store.append_together([({"order-2": (0, [placed("ada", None)])}, None, None)])
    await store.append({"order-3": (ANY, [placed("bob")])})
    await store.append({"order-4": (ANY, [NewEvent("OrderPlaced", {"customerId": "cy"})])})

    text = await every_table_as_text(conn)
    for secret in ("Lovelace", "ada@example.com", "St James"):
        assert secret not in text and secret.encode().hex() not in text
    events = await store.read_all(0, 100)
    assert [e.data.get("shippingAddress") for e in events] == [ADDRESS, ADDRESS, ADDRESS, None]
    assert [e.data.get("email") for e in events] == [
        "ada@example.com",
        None,
        "ada@example.com",
        None,
    ]
    assert (await store.read_stream("order-1"))[0].data["shippingAddress"] is None
    streams = await store.read_streams(["order-1", "order-3"])
    assert all(e.data["email"] is None for _, es in streams.values() for e in es)

    async with conn.transaction():
        assert await store.personal.keys.forget(conn, "ada")  # type: ignore[union-attr]
    events = await store.read_all(0, 100, whole_appends=True)
    assert [e.data.get("shippingAddress") for e in events] == [None, None, ADDRESS, None]
    assert events[0].data["orderId"] == "o" and events[0].data["customerId"] == "ada"


async def test_personal_data_without_a_subject_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool,
) -> None:
    store = EventStore(pool, personal=PersonalData(keys(), SPEC))
    for data in ({"email": "x@example.com"}, {"customerId": "", "email": "x@example.com"}):
        with pytest.raises(InvalidEventError):
            await store.append({"order-9": (ANY, [NewEvent("OrderPlaced", data)])})
    assert await store.read_all(0, 10) == []
    assert await pool.fetchval("SELECT count(*) FROM eventgraph.personal_keys") == 0
