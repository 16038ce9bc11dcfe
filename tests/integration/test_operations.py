"""The operator's way back from a poisoned event (status, park, rebuild), a log written by an
earlier version with non-canonical ids, and the log's append-only guard, on real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from application.idempotency import Conflict
from application.orders import CancelOrder, PlaceOrder
from application.products import RestockProduct
from application.shop import Shop
from domain.ids import OrderId
from domain.values import Actor
from eventgraph.readiness import readiness
from eventgraph.runtime import Runtime, open_runtime
from eventstore.events import ANY, NO_STREAM, NewEvent
from projections import by_name
from projections.operations import ParkRefused, park, resume, status
from projections.rebuild import rebuild
from tests.integration.test_projections import (
    SKUS,
    STAFF,
    _failed,
    caught_up,
    dump,
    register_catalogue,
    wait_for,
)

GHOST = NewEvent(
    "InventoryUpdated",
    {
        "sku": "GHOST",
        "reason": "restock",
        "quantity": 1,
        "onHand": 1,
        "reserved": 0,
        "orderId": None,
    },
    schema_version=2,
)


async def poisoned(runtime: Runtime) -> int:
    """Append an event the products projection cannot apply (stock of an unknown product),
    then a good one after it; return the bad event's position."""
    shop = Shop(runtime.store)
    await register_catalogue(shop)
    bad = await runtime.store.append({"product-GHOST": (ANY, [GHOST])})
    await shop.handle(RestockProduct(STAFF, SKUS[0], 5))
    await wait_for(lambda: _failed(runtime.pool, "products"))
    return bad.last_position


async def test_a_stopped_projection_says_why_and_resumes_once_its_event_is_parked(
    clean_db: str,
) -> None:
    async with open_runtime(clean_db) as runtime:
        bad = await poisoned(runtime)
        report = await readiness(runtime, 10_000)
        products = report["projections"]["products"]
        assert not report["ready"] and products["checkpoint"] == bad - 1
        assert products["stoppedAt"] == {
            "position": bad,
            "eventId": products["stoppedAt"]["eventId"],
            "type": "InventoryUpdated",
            "streamId": "product-GHOST",
        }

        async with runtime.pool.acquire() as conn:
            done = await park(conn, "products", bad, "stock for a sku never registered", "ops")
        assert done.resumed
        head = await caught_up(runtime)
        report = await readiness(runtime, 10_000)
        products = report["projections"]["products"]
        assert report["ready"] and products["checkpoint"] == head
        assert products["status"] == "running" and products["stoppedAt"] is None
        [parked] = products["parked"]
        assert parked["position"] == bad and parked["reason"].startswith("stock for a sku")
        assert "parkedBy" not in parked and "error" not in parked, "the open /readyz says less"
        detailed = await status(runtime.pool, head, 10_000, detail=True)
        [parked] = detailed["projections"]["products"]["parked"]
        assert parked["parkedBy"] == "ops" and "GHOST" in parked["error"]
        assert report["projections"]["orders"]["parked"] == []  # parked for products only
        restocked = await runtime.pool.fetchval(
            "SELECT on_hand FROM readmodel.products WHERE sku = $1", SKUS[0]
        )
        assert restocked == 405  # the event after the parked one was applied

        # A rebuild passes over the same event, and builds the same model.
        before = await dump(runtime.pool)
        await rebuild(runtime.dsn, runtime.store, by_name("products"))
        assert await dump(runtime.pool) == before
        assert (await readiness(runtime, 10_000))["projections"]["products"]["parked"]


async def test_a_rebuild_stops_on_an_event_nobody_parked(clean_db: str) -> None:
    from projections.rebuild import RebuildFailed

    async with open_runtime(clean_db) as runtime:
        bad = await poisoned(runtime)
        with pytest.raises(RebuildFailed, match=f"eventgraph park products {bad}"):
            await rebuild(runtime.dsn, runtime.store, by_name("products"))


async def test_park_refuses_what_it_cannot_honour(clean_db: str) -> None:
    async with open_runtime(clean_db) as runtime:
        bad = await poisoned(runtime)
        async with runtime.pool.acquire() as conn:
            for name, position, reason, match in [
                ("nope", bad, "r", "no projection"),
                ("products", bad - 1, "r", "already applied"),
                ("products", 10**9, "r", "no event at position"),
                ("products", bad, "   ", "say why"),
                ("products", bad, "x\x00y", "say why"),
            ]:
                with pytest.raises(ParkRefused, match=match):
                    await park(conn, name, position, reason, "ops")
            await park(conn, "products", bad, "ghost stock", "ops")
            with pytest.raises(ParkRefused, match="already parked"):
                await park(conn, "products", bad, "again", "ops")
        assert await runtime.pool.fetchval("SELECT count(*) FROM eventgraph.parked_events") == 1


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGRAPH_")}
    return subprocess.run(
        [sys.executable, "-m", "eventgraph.cli", *args],
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_operator_commands_show_and_park(clean_db: str) -> None:
    async with open_runtime(clean_db) as runtime:
        bad = await poisoned(runtime)
        shown = cli("projections", url=clean_db)
        assert shown.returncode == 1, "not ready: a projection has stopped"
        assert f"stopped at position {bad}: InventoryUpdated on product-GHOST" in shown.stdout
        assert f"eventgraph park products {bad}" in shown.stdout

        refused = cli("park", "products", str(bad - 1), "--reason", "x", url=clean_db)
        assert refused.returncode == 1 and "already applied" in refused.stderr
        parked = cli("park", "products", str(bad), "--reason", "ghost", "--by", "kim", url=clean_db)
        assert parked.returncode == 0, parked.stderr
        assert "it resumes now" in parked.stdout
        await caught_up(runtime)
        report = json.loads(cli("projections", "--json", url=clean_db).stdout)
        assert report["ready"]
        assert report["projections"]["products"]["parked"][0]["parkedBy"] == "kim"
        rebuilt = cli("rebuild", "products", url=clean_db)
        assert rebuilt.returncode == 0 and "products: rebuilt" in rebuilt.stderr, rebuilt.stderr
        assert cli("rebuild", "nope", url=clean_db).returncode == 2


def legacy(event_type: str, data: dict[str, Any]) -> NewEvent:
    """An event as the version before canonical ids wrote it: schema v1, raw id spelling."""
    return NewEvent(event_type, data, schema_version=1, occurred_at=datetime.now(UTC))


async def test_a_log_with_non_canonical_ids_from_an_earlier_version_reads_canonically(
    clean_db: str,
) -> None:
    """What the earlier version wrote for `payOrder(orderId: UPPER)`, `shipOrder({…})` and
    `cancelOrder(no hyphens)`: the stream named canonically, the events not."""
    paid_id, cancelled_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop)
        store = runtime.store
        for order_id in (paid_id, cancelled_id):
            placed = NewEvent(
                "OrderPlaced",
                {
                    "orderId": order_id,
                    "customerId": "ann",
                    "lines": [{"sku": SKUS[0], "quantity": 2, "unitPrice": "1.25"}],
                    "total": "2.50",
                },
                schema_version=2,
            )
            reserve = legacy(
                "InventoryUpdated",
                {"sku": SKUS[0], "reason": "reservation", "quantity": 2, "onHand": 400,
                 "reserved": 2 if order_id == paid_id else 4, "orderId": order_id},
            )  # fmt: skip
            await store.append(
                {f"order-{order_id}": (NO_STREAM, [placed]), f"product-{SKUS[0]}": (ANY, [reserve])}
            )
        upper, braces, bare = paid_id.upper(), "{" + paid_id + "}", cancelled_id.replace("-", "")
        await store.append(
            {f"order-{paid_id}": (ANY, [legacy("PaymentProcessed", {"orderId": upper,
             "amount": "2.50", "amountPaid": "2.50"})])}
        )  # fmt: skip
        await store.append(
            {
                f"order-{paid_id}": (ANY, [legacy("OrderShipped", {"orderId": braces})]),
                f"product-{SKUS[0]}": (ANY, [legacy("InventoryUpdated", {"sku": SKUS[0],
                 "reason": "shipment", "quantity": 2, "onHand": 398, "reserved": 2,
                 "orderId": braces})]),
            }
        )  # fmt: skip
        await store.append(
            {
                f"order-{cancelled_id}": (ANY, [legacy("OrderCancelled", {"orderId": bare,
                 "reason": "no", "cancelledBy": "ann"})]),
                f"product-{SKUS[0]}": (ANY, [legacy("InventoryUpdated", {"sku": SKUS[0],
                 "reason": "release", "quantity": 2, "onHand": 398, "reserved": 0,
                 "orderId": bare})]),
            }
        )  # fmt: skip
        await caught_up(runtime)

        report = await readiness(runtime, 10_000)
        assert report["ready"], report
        statuses = dict(await runtime.pool.fetch("SELECT order_id, status FROM readmodel.orders"))
        assert statuses == {paid_id: "SHIPPED", cancelled_id: "CANCELLED"}
        sales = await runtime.pool.fetchrow("SELECT * FROM readmodel.sales_totals")
        assert (sales["orders_paid"], sales["orders_shipped"], sales["orders_cancelled"]) == (
            1,
            1,
            1,
        )
        read = await store.read_all(0, 1000)
        ids = {e.data["orderId"] for e in read if e.data.get("orderId")}
        assert ids == {paid_id, cancelled_id}
        current = {"OrderPlaced": 3, "ProductRegistered": 1}  # v3 added the payment deadline
        assert all(e.schema_version == current.get(e.type, 2) for e in read)

        # The command side reads the same log: the cancelled order's stock was released.
        customer = Actor("ann", "customer")
        with pytest.raises(Exception, match="cannot be cancelled"):
            await shop.handle(CancelOrder(customer, OrderId(cancelled_id), "again"))


async def test_the_log_is_append_only_for_the_service_role(clean_db: str) -> None:
    """The service's own connection (the owner's, here) cannot rewrite history."""
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop)
        count = await runtime.pool.fetchval("SELECT count(*) FROM eventgraph.events")
        for statement in [
            "UPDATE eventgraph.events SET data = '{}'::jsonb",
            "DELETE FROM eventgraph.events",
            "TRUNCATE eventgraph.events",
            "TRUNCATE eventgraph.events CASCADE",
        ]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await runtime.pool.execute(statement)
        assert await runtime.pool.fetchval("SELECT count(*) FROM eventgraph.events") == count
        assert await runtime.pool.fetchval("SELECT count(*) FROM eventgraph.events") == len(SKUS)


async def test_resume_lets_a_stopped_projection_try_again(clean_db: str) -> None:
    """After a failure that was not the event's fault (here: the product registered late,
    by hand, so that the stock event now applies), an operator resumes without parking."""
    async with open_runtime(clean_db) as runtime:
        await poisoned(runtime)
        async with runtime.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO readmodel.products VALUES ('GHOST', 'Ghost', 1, 0, 0, 1, now())"
            )
            assert await resume(conn, "products")
            assert not await resume(conn, "products")
        await caught_up(runtime)
        report = await readiness(runtime, 10_000)
        assert report["ready"] and report["projections"]["products"]["parked"] == []


async def test_the_upgrade_retries_a_projection_the_earlier_version_stopped(
    server_url: str,
) -> None:
    """Migration 0004 sets a projection stopped by the previous version running again: with
    canonical ids it may now apply what stopped it (and if not, it says which event)."""
    from eventstore.migrate import available_migrations, migrate
    from tests.kit.database import replace_database as _replace_database

    name = f"eventgraph_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(_replace_database(server_url, name))
        try:
            await conn.execute(
                "CREATE SCHEMA eventgraph; CREATE TABLE eventgraph.schema_migrations"
                " (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, file, sql in available_migrations()[:3]:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO eventgraph.schema_migrations VALUES ($1, $2)", version, file
                )
            await conn.execute(
                "INSERT INTO eventgraph.projections (name, version, generation, status, error)"
                " VALUES ('orders', 1, 1, 'failed', 'PaymentProcessed for an unknown order')"
            )
            later = [name for version, name, _ in available_migrations() if version >= 4]
            assert later[:2] == ["0004_guards.sql", "0005_append_transactions.sql"]
            assert await migrate(conn) == later
            row = await conn.fetchrow("SELECT status, error FROM eventgraph.projections")
            assert (row["status"], row["error"]) == ("running", None)
            # and the previous version's append function still works beside the new one
            await conn.execute(
                "SELECT * FROM eventgraph.append_events(ARRAY['s'], ARRAY[0::bigint], NULL,"
                " ARRAY[gen_random_uuid()], ARRAY['s'], ARRAY['Old'], ARRAY[1],"
                " ARRAY['{}'], ARRAY['{}'], ARRAY[now()])"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_a_key_stored_by_the_previous_version_still_replays(clean_db: str) -> None:
    """A placeOrder retried across the upgrade finds the first result under the key the
    previous version stored (`placeOrder:len:caller:key`), instead of placing a second order."""
    async with open_runtime(clean_db) as runtime:
        shop = Shop(runtime.store)
        await register_catalogue(shop)
        ann = Actor("ann", "customer")
        first = await shop.handle(PlaceOrder(ann, [(SKUS[0], 1)]))
        await runtime.pool.execute(
            "INSERT INTO eventgraph.idempotency_keys (key, positions, streams, versions)"
            " VALUES ($1, $2, $3, $4)",
            "placeOrder:3:ann:retry-1",
            [first.position - 1, first.position],
            [f"order-{first.state.order_id}", f"product-{SKUS[0]}"],
            [1, 2],
        )
        again = await shop.handle(PlaceOrder(ann, [(SKUS[0], 1)], "retry-1"))
        assert again.replayed and again.state.order_id == first.state.order_id
        # but not for an order of other products: the old key had no fingerprint to compare
        with pytest.raises(Conflict):
            await shop.handle(PlaceOrder(ann, [(SKUS[1], 1)], "retry-1"))
