"""Fan-out of one change to N subscribers of one view, until the last holds it, beside a plain
Starlette WebSocket broadcast of a message of the same size to N sockets on the same server,
driven by a Node.js client in its own process (`bench/node/fanout.mjs`), rounds alternating.

    (cd bench/node && npm ci)
    uv run python -m bench.fanout [--clients 5000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from application.auth import mint_token
from bench.common import fresh_database, machine, server
from bench.live import NODE, raise_open_files
from bench.server import SECRET, running_server


async def run(clients: int, rounds: int) -> str:
    with server() as server_url:
        async with fresh_database(server_url) as url:
            with running_server(url) as base:
                client = await asyncio.create_subprocess_exec(
                    "node",
                    str(NODE / "fanout.mjs"),
                    f"url={base}",
                    f"staff={mint_token(SECRET, 'bench', 'staff')}",  # type: ignore[arg-type]
                    f"viewer={mint_token(SECRET, 'viewer', 'customer')}",  # type: ignore[arg-type]
                    f"clients={clients}",
                    f"rounds={rounds}",
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await client.communicate()
                return out.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps({"machine": machine(), "openFilesLimit": raise_open_files()}))
    print(asyncio.run(run(args.clients, args.rounds)))


if __name__ == "__main__":
    main()
