"""Start `eventgraph serve` on a database for a benchmark, in its own process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx

SECRET = "bench-secret-" + "x" * 32
PIDS: dict[str, int] = {}
"""The process id of each running server, by its URL (to read its memory)."""


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid`."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError(pid)


@contextlib.contextmanager
def running_server(
    database_url: str, factory: str = "bench.app:create", **env: str
) -> Iterator[str]:
    """The API with the benchmarks' baseline endpoints, on `database_url`; `factory` names
    the application factory uvicorn runs (a bench may wrap bench.app's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        # The production app plus the benchmarks' baseline endpoints (bench/app.py), with
        # the settings `eventgraph serve` gives uvicorn.
        # BENCH_SERVER_CHECKOUT: run the server of another checkout (its own .venv), to
        # measure an earlier version with the same client in the same run.
        checkout = os.environ.get("BENCH_SERVER_CHECKOUT")
        python = os.path.join(checkout, ".venv", "bin", "python") if checkout else sys.executable
        process = subprocess.Popen(
            [
                python,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--port",
                str(port),
                "--ws-max-size",
                "65536",
                "--log-level",
                "warning",
                # BENCH_WS: uvicorn's WebSocket implementation, to compare them on figures
                *(["--ws", os.environ["BENCH_WS"]] if os.environ.get("BENCH_WS") else []),
            ],
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "EVENTGRAPH_JWT_SECRET": SECRET,
                "EVENTGRAPH_DATA_DIR": tmp,
                # The load generators open thousands of sockets with one token, from one
                # address, and keep many operations of one user in flight: no fair-use caps.
                "EVENTGRAPH_MAX_CONNECTIONS_PER_USER": "1000000",
                "EVENTGRAPH_MAX_CONNECTIONS": "0",
                "EVENTGRAPH_MAX_CONNECTIONS_PER_IP": "0",
                "EVENTGRAPH_MAX_OPERATIONS_PER_USER": "0",
                "EVENTGRAPH_MAX_SUBSCRIPTIONS_PER_USER": "0",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "log"), "wb"),  # noqa: SIM115
            cwd=checkout or None,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            else:
                raise RuntimeError("the server did not start")
            PIDS[url] = process.pid
            yield url
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:  # still draining a load generator's backlog
                process.kill()
                process.wait()
