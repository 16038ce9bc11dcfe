"""A server whose read side has its own database (EVENTGRAPH_READ_DATABASE_URL): commands
append to the event store's database, queries, `atLeast`, live views and /readyz read the
read database, and nothing of the read side is left on the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.kit.database import fresh_database
from tests.kit.documents import PLACE, REGISTER
from tests.kit.server import start_server, stop_server, token
from tests.kit.ws import PRODUCT_SUB, acked

STAFF = {"Authorization": f"Bearer {token('read-staff', 'staff')}"}
ALICE = {"Authorization": f"Bearer {token('read-alice')}"}
PRODUCT_Q = """query($sku: String!, $at: Position) {
  product(sku: $sku, atLeast: $at) { onHand reserved position } }"""


@pytest.fixture
async def two_databases(server_url: str) -> AsyncIterator[tuple[str, str]]:
    async with fresh_database(server_url) as log, fresh_database(server_url) as reads:
        yield log, reads


async def test_a_server_reads_its_own_read_database(
    two_databases: tuple[str, str], tmp_path: Path
) -> None:
    log_url, read_url = two_databases
    server = start_server(log_url, tmp_path, EVENTGRAPH_READ_DATABASE_URL=read_url)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def gql(query: str, variables: dict[str, object], who: dict[str, str]) -> dict:
                response = await client.post(
                    "/graphql", json={"query": query, "variables": variables}, headers=who
                )
                body: dict = response.json()
                assert not body.get("errors"), body
                return body["data"]

            registered = await gql(
                REGISTER, {"sku": "SEP-1", "name": "Sep", "price": "3.00", "stock": 5}, STAFF
            )
            watcher = await acked(server.url, token("read-bob"))
            await watcher.subscribe("p", PRODUCT_SUB, {"sku": "SEP-1"})
            first = (await watcher.next_data("p"))["product"]
            assert first["position"] >= registered["registerProduct"]["position"]

            placed = await gql(PLACE, {"lines": [{"sku": "SEP-1", "quantity": 2}]}, ALICE)
            position = placed["placeOrder"]["position"]
            read = await gql(PRODUCT_Q, {"sku": "SEP-1", "at": position}, ALICE)
            assert read["product"]["reserved"] == 2 and read["product"]["position"] >= position
            while (pushed := (await watcher.next_data("p"))["product"])["reserved"] != 2:
                pass
            assert pushed["position"] >= position
            await watcher.ws.close()

            # The product query waited for the products read model only: the others (orders,
            # sales, ...) reach the order on their own, soon after.
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                ready = (await client.get("/readyz")).json()
                assert ready["ready"] and ready["head"] >= position
                checkpoints = {n: p["checkpoint"] for n, p in ready["projections"].items()}
                if all(c >= position for c in checkpoints.values()):
                    break
                assert asyncio.get_running_loop().time() < deadline, (position, checkpoints)
                await asyncio.sleep(0.05)
    finally:
        stop_server(server)

    log = await asyncpg.connect(log_url)
    reads = await asyncpg.connect(read_url)
    try:
        assert await log.fetchval("SELECT count(*) FROM eventgraph.events") >= 3
        assert await log.fetchval("SELECT count(*) FROM eventgraph.projections") == 0
        assert not await log.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rm\\_%'"
        )
        assert await reads.fetchval("SELECT count(*) FROM eventgraph.events") == 0
        assert await reads.fetchval("SELECT min(position) FROM eventgraph.projections") >= position
    finally:
        await log.close()
        await reads.close()
