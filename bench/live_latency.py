"""(a) Latency of live views under load: 1,000 subscribers spread over 100 products while
orders are placed at 100/s; for each order and each subscriber of its product, the time from
the mutation's response to that subscriber receiving a view at or past the order's stock
event. One server process; clients in this process.

    uv run python -m bench.live_latency [--subscribers 1000] [--products 100] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import websockets

from application.auth import mint_token
from bench.common import fresh_database, machine, server
from bench.http import Connection
from bench.server import SECRET, running_server
from tests.kit.documents import LEAN_PLACE as PLACE
from tests.kit.documents import LEAN_PRODUCT_SUB as SUB
from tests.kit.documents import LEAN_REGISTER as REGISTER


async def main(subscribers: int, products: int, rate: float, seconds: float) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                staff = {"Authorization": "Bearer " + mint_token(SECRET, "bench", "staff")}
                http = await Connection.open(base)
                skus = [f"LAT-{i}" for i in range(products)]
                for sku in skus:
                    await http.post_json(
                        "/graphql",
                        {"query": REGISTER, "variables": {"sku": sku, "stock": 1_000_000}},
                        staff,
                    )
                arrivals: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in skus}
                token = mint_token(SECRET, "viewer", "customer")
                sockets = []
                for i in range(subscribers):
                    sku = skus[i % products]
                    ws = await websockets.connect(
                        base.replace("http", "ws") + "/graphql",
                        subprotocols=["graphql-transport-ws"],
                        max_queue=None,
                    )
                    await ws.send(
                        json.dumps(
                            {
                                "type": "connection_init",
                                "payload": {"Authorization": f"Bearer {token}"},
                            }
                        )
                    )
                    await ws.recv()
                    await ws.send(
                        json.dumps(
                            {
                                "type": "subscribe",
                                "id": "1",
                                "payload": {"query": SUB, "variables": {"sku": sku}},
                            }
                        )
                    )
                    seen: list[tuple[int, float]] = []
                    arrivals[sku].append(seen)
                    sockets.append((ws, seen))

                async def listen(
                    ws: websockets.ClientConnection, seen: list[tuple[int, float]]
                ) -> None:
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "next":
                            seen.append(
                                (
                                    message["payload"]["data"]["product"]["position"],
                                    time.perf_counter(),
                                )
                            )

                listeners = [asyncio.create_task(listen(ws, seen)) for ws, seen in sockets]
                await asyncio.sleep(2)
                customer = {"Authorization": "Bearer " + mint_token(SECRET, "buyer", "customer")}
                orders: list[tuple[str, int, float]] = []
                free: asyncio.Queue[Connection] = asyncio.Queue()
                for _ in range(16):
                    free.put_nowait(await Connection.open(base))
                interval = 1 / rate
                started = time.perf_counter()

                async def place(n: int) -> None:
                    sku = skus[n % products]
                    conn = await free.get()
                    try:
                        _, body = await conn.post_json(
                            "/graphql", {"query": PLACE, "variables": {"sku": sku}}, customer
                        )
                    finally:
                        free.put_nowait(conn)
                    answered = time.perf_counter()
                    stock = next(
                        e["position"]
                        for e in body["data"]["placeOrder"]["events"]
                        if e["streamId"] == f"product-{sku}"
                    )
                    orders.append((sku, stock, answered))

                tasks = []
                n = 0
                while time.perf_counter() - started < seconds:
                    tasks.append(asyncio.create_task(place(n)))
                    n += 1
                    await asyncio.sleep(max(0.0, started + n * interval - time.perf_counter()))
                await asyncio.gather(*tasks)
                achieved = len(orders) / (time.perf_counter() - started)
                await asyncio.sleep(3)
                for task in listeners:
                    task.cancel()
                for ws, _ in sockets:
                    await ws.close()
    latencies = []
    missing = 0
    for sku, position, answered in orders:
        for seen in arrivals[sku]:
            at = next((t for p, t in seen if p >= position), None)
            if at is None:
                missing += 1
            else:
                latencies.append(max(at - answered, 0.0) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"machine: {machine()}; {subscribers} subscribers over {products} products, "
        f"{achieved:.0f} orders/s for {seconds}s"
    )
    print(
        f"(a) mutation response -> subscriber has the view: p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        f" over {len(latencies)} deliveries; {missing} never delivered (target p50 < 20, p99 < 100)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    a = parser.parse_args()
    asyncio.run(main(a.subscribers, a.products, a.rate, a.seconds))
