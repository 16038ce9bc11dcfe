"""Helpers of the order-deadline tests against running servers: polling until something holds,
users signed in to a server of the test's own, what the server's operators see (/readyz,
/metrics), and who leads a reaction (the session advisory lock its connection holds)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.server import Api, Server, Users, token

T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T | None]], seconds: float = 30, what: str = "the condition"
) -> T:
    """Poll `check` until it returns something truthy, and return that; fail after `seconds`
    (a bound for a stuck server, not a measurement)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = await check()
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def users_on(server: Server) -> AsyncIterator[Users]:
    """Staff, alice, bob and an anonymous client on `server`, with fresh names."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        run = uuid.uuid4().hex[:6]
        yield Users(
            staff=Api(client, server.url, token(f"staff-{run}", "staff")),
            alice=Api(client, server.url, token(f"alice-{run}")),
            bob=Api(client, server.url, token(f"bob-{run}")),
            anonymous=Api(client, server.url, None),
            client=client,
            url=server.url,
        )


def bearer_of(api: Api) -> str:
    return api.headers["Authorization"].split()[1]


async def readyz(client: httpx.AsyncClient, url: str, metrics_token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}
    response = await client.get(url + "/readyz", headers=headers)
    assert response.status_code in (200, 503), response.text
    report: dict[str, Any] = response.json()
    return report


async def reactions_settled(
    client: httpx.AsyncClient, url: str, metrics_token: str | None, *names: str
) -> dict[str, Any]:
    """Once each named reaction has followed the log to its head and has no timer left
    that is due: its report (from /readyz)."""

    async def settled() -> dict[str, Any] | None:
        reactions: dict[str, Any] = (await readyz(client, url, metrics_token))["reactions"]
        done = all(
            reactions[n]["lagEvents"] == 0 and reactions[n]["oldestOverdueSeconds"] == 0
            for n in names
        )
        return reactions if done else None

    return await until(settled, what=f"the reactions {names} to settle")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(
    client: httpx.AsyncClient, url: str, metrics_token: str | None
) -> tuple[dict[str, str], Samples]:
    """/metrics: each family's type by name, and every sample by (name, labels)."""
    headers = {"Authorization": f"Bearer {metrics_token}"} if metrics_token else {}
    response = await client.get(url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    families: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families, samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


REACTION_LEADER = """
SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext('eventgraph.reaction.' || $1)
"""
"""The backend holding reaction $1's session advisory lock (`pg_try_advisory_lock(hashtext(
'eventgraph.reaction.<name>'))`, a bigint key: its high half in classid, its low half in
objid), with its connection's application name."""


async def reaction_leader(conn: asyncpg.Connection, reaction: str) -> int | None:
    """The backend pid of the connection that leads `reaction`, if one does."""
    row = await conn.fetchrow(REACTION_LEADER, reaction)
    if row is None:
        return None
    assert row["application_name"] == f"eventgraph-reaction-{reaction}", dict(row)
    return int(row["pid"])


async def reaction_connections(conn: asyncpg.Connection, reaction: str) -> int:
    """How many processes run `reaction` (its leader and standbys) on this database."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            f"eventgraph-reaction-{reaction}",
        )
    )
