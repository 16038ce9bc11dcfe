"""Live delivery at 1,000 to 16,000 subscribers, driven by a light client in its own process
(`bench/node/live.mjs`, Node.js on `ws`): N WebSockets each watching one of N/10 product
views, orders at 100/s on random products; for each order and each subscriber of its
product, the time from the mutation being sent to that subscriber holding a view at or past
the order; placeOrder's own latency meanwhile; the server's memory per idle subscription.

    (cd bench/node && npm ci)
    uv run python -m bench.live [--subscribers 1000,8000] [--rate 100] [--seconds 20]

Prints one JSON line per run. The open-files limit is raised to the hard limit for the
server and the client (each socket is a descriptor on both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from pathlib import Path

import httpx

from application.auth import mint_token
from bench.common import fresh_database, machine, server
from bench.server import PIDS, SECRET, rss_bytes, running_server

NODE = Path(__file__).parent / "node"


def raise_open_files() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def run(subscribers: int, rate: float, seconds: float) -> dict[str, object]:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                pid = PIDS[base]
                idle = rss_bytes(pid)
                async with httpx.AsyncClient(timeout=60) as http:
                    objects_idle = (await http.get(base + "/bench/objects")).json()
                client = await asyncio.create_subprocess_exec(
                    "node",
                    str(NODE / "live.mjs"),
                    f"url={base}",
                    f"staff={mint_token(SECRET, 'bench', 'staff')}",  # type: ignore[arg-type]
                    f"customer={mint_token(SECRET, 'viewer', 'customer')}",  # type: ignore[arg-type]
                    f"subscribers={subscribers}",
                    f"views={max(1, subscribers // 10)}",
                    f"rate={rate}",
                    f"seconds={seconds}",
                    stdout=asyncio.subprocess.PIPE,
                )
                assert client.stdout is not None
                result: dict[str, object] = {}
                async for line in client.stdout:
                    message = json.loads(line)
                    if message["phase"] == "subscribed":
                        await asyncio.sleep(1.5)  # settled, before the load starts
                        subscribed = rss_bytes(pid)
                        result["serverRssIdleMiB"] = round(idle / 2**20, 1)
                        result["serverRssSubscribedMiB"] = round(subscribed / 2**20, 1)
                        connected = max(1, subscribers - int(message["failed"]))
                        result["bytesPerSubscription"] = round((subscribed - idle) / connected)
                        async with httpx.AsyncClient(timeout=60) as http:
                            objects = (await http.get(base + "/bench/objects")).json()
                        before = dict(objects_idle["byType"])
                        result["trackedObjectsPerSubscription"] = round(
                            (objects["total"] - objects_idle["total"]) / connected, 1
                        )
                        result["trackedPerSubscriptionByType"] = {
                            name: round((count - before.get(name, 0)) / connected, 2)
                            for name, count in objects["byType"][:25]
                        }
                    else:
                        result.update(message)
                await client.wait()
                return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", default="1000,8000")
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    limit = raise_open_files()
    print(json.dumps({"machine": machine(), "openFilesLimit": limit}))
    for count in (int(n) for n in args.subscribers.split(",")):
        print(json.dumps(asyncio.run(run(count, args.rate, args.seconds))), flush=True)


if __name__ == "__main__":
    main()
