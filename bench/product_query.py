"""`product(sku)` over GraphQL beside a plain Starlette endpoint running the same SQL on the
same pool in the same server process, each from 32 concurrent keep-alive clients.

    uv run python -m bench.product_query [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random

from application.auth import mint_token
from bench.common import cpu_by_command, cpu_delta, fresh_database, machine, rate, server
from bench.http import Connection
from bench.server import SECRET, running_server
from tests.kit.documents import LEAN_PRODUCT as QUERY
from tests.kit.documents import LEAN_REGISTER as REGISTER

CLIENTS = 32


async def main(seconds: float) -> None:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                staff = {"Authorization": "Bearer " + mint_token(SECRET, "bench", "staff")}
                skus = [f"Q-{i}" for i in range(100)]
                connections = [await Connection.open(base) for _ in range(CLIENTS)]
                for sku in skus:
                    await connections[0].post_json(
                        "/graphql",
                        {"query": REGISTER, "variables": {"sku": sku, "stock": 100}},
                        staff,
                    )

                async def graphql(w: int) -> int:
                    status, body = await connections[w].post_json(
                        "/graphql",
                        {"query": QUERY, "variables": {"sku": random.choice(skus)}},
                        staff,
                    )
                    assert status == 200 and body["data"]["product"], body
                    return 1

                async def plain(w: int) -> int:
                    status, body = await connections[w].get(
                        f"/bench/product?sku={random.choice(skus)}"
                    )
                    assert status == 200 and body["product"], body
                    return 1

                await rate(CLIENTS, 1.0, graphql)
                await rate(CLIENTS, 1.0, plain)
                results: dict[str, list[float]] = {"graphql": [], "plain": []}
                for _ in range(int(os.environ.get("BENCH_ROUNDS", "2"))):  # interleaved
                    for name, op in (("plain", plain), ("graphql", graphql)):
                        before = cpu_by_command()
                        figure = await rate(CLIENTS, seconds, op)
                        used = cpu_delta(before, cpu_by_command())
                        results[name].append(figure)
                        per = {k: round(v / (figure * seconds) * 1e6) for k, v in used.items()}
                        print(f"{name}: {figure:.0f}/s; CPU us per request by process: {per}")
                for c in connections:
                    await c.close()
    g, p = max(results["graphql"]), max(results["plain"])
    print(f"machine: {machine()}; {CLIENTS} clients, {seconds}s x 2 rounds each, best round")
    print(f"plain Starlette endpoint, same SQL and pool: {p:8.0f} req/s  {results['plain']}")
    print(f"GraphQL product(sku):                        {g:8.0f} req/s  {results['graphql']}")
    print(f"ratio: {g / p:.2f} (target 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args().seconds))
