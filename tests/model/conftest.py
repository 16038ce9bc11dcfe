"""The server the model-based test drives: its own database, the payment window and low-stock
threshold the model assumes, and the direct access to its databases (tests/model/db.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit.database import fresh_database
from tests.kit.server import start_server, stop_server
from tests.model import machine
from tests.model.db import Db


@pytest.fixture(scope="module")
def shared(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[machine.Shared]:
    context = fresh_database(server_url)
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(context.__aenter__())
    server = start_server(
        url,
        Path(tmp_path_factory.mktemp("model")),
        EVENTGRAPH_PAYMENT_WINDOW_SECONDS=str(machine.WINDOW.seconds),
        EVENTGRAPH_LOW_STOCK_THRESHOLD=str(machine.LOW),
    )
    db = Db(url, server.read_url)
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as http:
        machine.SHARED = machine.Shared(server, db, http)
        try:
            yield machine.SHARED
        finally:
            machine.SHARED = None
            db.close()
            stop_server(server)
            loop.run_until_complete(context.__aexit__(None, None, None))
            loop.close()
    errors = [line for line in server.log.read_text().splitlines() if " ERROR " in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:20])
