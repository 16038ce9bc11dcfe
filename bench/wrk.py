"""HTTP figures from light C clients in their own processes, each beside its floor in the
same run, rounds alternating:

* `product(sku)` over GraphQL (POST) beside the plain endpoint running the same SQL on the
  same pool in the same server (`/bench/product`): wrk, 1 thread, 32 connections;
* placeOrder/s over GraphQL (one line on one of 100 products, or every order on one hot
  product) beside raw single-event appends into a table of the event log's shape (pgbench,
  16 clients, one INSERT per transaction), with the read side running: wrk, 16 connections.

    uv run python -m bench.wrk [--seconds 5] [--rounds 3]     # needs wrk and pgbench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx

from application.auth import mint_token
from bench.append import RAW_TABLE
from bench.common import fresh_database, machine, server
from bench.server import SECRET, running_server
from tests.kit.documents import LEAN_PRODUCT

PRODUCTS = 100
REGISTER = """mutation($s: String!) {
  registerProduct(sku: $s, name: "Q", unitPrice: "1.00", initialStock: 100000000) { position } }"""
SCRIPTS = Path(__file__).parent / "scripts"
PRODUCT_LUA = (SCRIPTS / "product.lua").read_text()
PLACE_LUA = (SCRIPTS / "place_order.lua").read_text()


def wrk(base: str, script: str, connections: int, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "-s", lua.name, base],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(out)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def pgbench(url: str, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write((SCRIPTS / "raw_append.sql").read_text())
        script.flush()
        done = subprocess.run(
            ["pgbench", "-n", "-c16", "-j1", f"-T{int(seconds)}", "-f", script.name, url],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed: {done.stderr[-2000:]}")
        out = done.stdout
    found = re.search(r"tps = ([\d.]+)", out)
    assert found, out
    return float(found.group(1))


async def main(seconds: float, rounds: int) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                staff = mint_token(SECRET, "bench", "staff")  # type: ignore[arg-type]
                customer = mint_token(SECRET, "bench-buyer", "customer")  # type: ignore[arg-type]
                async with httpx.AsyncClient(timeout=30) as http:
                    for i in range(PRODUCTS):
                        await http.post(
                            base + "/graphql",
                            json={
                                "query": REGISTER,
                                "variables": {"s": f"Q-{i}"},
                            },
                            headers={"Authorization": f"Bearer {staff}"},
                        )
                import asyncpg

                conn = await asyncpg.connect(url)
                await conn.execute("DROP TABLE IF EXISTS raw_events")
                await conn.execute(RAW_TABLE)
                await conn.close()

                def product_script(plain: bool) -> str:
                    return PRODUCT_LUA % {
                        "n": PRODUCTS,
                        "plain": "true" if plain else "false",
                        "token": customer,
                        "query": json.dumps(LEAN_PRODUCT),
                    }

                def place_script(hot: bool) -> str:
                    return PLACE_LUA % {
                        "n": PRODUCTS,
                        "hot": "true" if hot else "false",
                        "token": customer,
                    }

                query, plain, orders, hot, raw = [], [], [], [], []
                for _ in range(rounds):
                    plain.append(wrk(base, product_script(True), 32, seconds))
                    query.append(wrk(base, product_script(False), 32, seconds))
                    # pgbench last: its burst of writes leaves the server flushing for a
                    # while, which would fall on whatever ran next.
                    orders.append(wrk(base, place_script(False), 16, seconds))
                    hot.append(wrk(base, place_script(True), 16, seconds))
                    raw.append(pgbench(url, seconds))
                    await asyncio.sleep(seconds)
                med = statistics.median
                print(
                    json.dumps(
                        {
                            "machine": machine(),
                            "seconds": seconds,
                            "productQueryPerSec": query,
                            "plainEndpointPerSec": plain,
                            "queryRatio": round(med(query) / med(plain), 3),
                            "placeOrderPerSec": orders,
                            "hotPlaceOrderPerSec": hot,
                            "rawAppendsPerSec": raw,
                            "placeOrderRatio": round(med(orders) / med(raw), 3),
                            "hotRatio": round(med(hot) / med(orders), 3),
                        }
                    )
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
