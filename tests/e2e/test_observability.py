"""/metrics and the JSON logs of a running server: every metric family moves under a scripted
set of operations (commands, a query, a subscription, killed database connections), the
endpoint refuses a scrape without its token, and one request id leads from a log line to the
events that request appended."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from application.products import RestockProduct
from application.shop import Shop
from domain.values import Actor
from eventgraph.runtime import shop_upcasters
from eventstore.store import EventStore, init_connection
from projections import READ_MODELS
from tests.kit.database import fresh_database
from tests.kit.documents import EVENTS, PLACE, REGISTER, RESTOCK
from tests.kit.server import Server, start_server, stop_server, token
from tests.kit.ws import PRODUCT_SUB, acked

METRICS_TOKEN = "scrape-" + uuid.uuid4().hex
STAFF = {"Authorization": f"Bearer {token('ops-staff', 'staff')}"}
ALICE = {"Authorization": f"Bearer {token('ops-alice')}"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
async def observed_url(server_url: str) -> AsyncIterator[str]:
    async with fresh_database(server_url) as url:
        yield url


@pytest.fixture(scope="module")
def observed(observed_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        observed_url,
        tmp_path_factory.mktemp("observed"),
        EVENTGRAPH_METRICS_TOKEN=METRICS_TOKEN,
        EVENTGRAPH_LOG_FORMAT="json",
        EVENTGRAPH_BROADCAST_URL=observed_url.replace("postgresql://", "postgres://", 1),
    )
    yield running
    stop_server(running)


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(
        url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def gql(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    variables: dict[str, Any],
    headers: dict[str, str],
) -> dict[str, Any]:
    response = await client.post(
        url + "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_metrics_need_the_token_when_one_is_set(observed: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}]:
            response = await client.get(observed.url + "/metrics", headers=headers)
            assert response.status_code == 401
            assert "eventgraph_" not in response.text


async def test_every_family_moves_under_a_scripted_set_of_operations(
    observed: Server, observed_url: str
) -> None:
    sku = f"OBS-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=30) as client:
        before = await scrape(client, observed.url)

        registered = await gql(
            client,
            observed.url,
            REGISTER,
            {"sku": sku, "name": "Obs", "price": "2.00", "stock": 3},
            STAFF,
        )
        assert not registered.get("errors")
        live = await acked(observed.url, token("ops-bob"))
        await live.subscribe("p", PRODUCT_SUB, {"sku": sku})
        assert (await live.next_data("p"))["product"]["onHand"] == 3

        lines = {"lines": [{"sku": sku, "quantity": 1}], "key": "obs-key-1"}
        first = await gql(client, observed.url, PLACE, lines, ALICE)
        again = await gql(client, observed.url, PLACE, lines, ALICE)  # replayed by its key
        assert first["data"]["placeOrder"]["orderId"] == again["data"]["placeOrder"]["orderId"]
        # Another process moves the product's stream on: this server's cached state is stale,
        # so its next command on the product conflicts once and is decided again.
        other = await asyncpg.create_pool(
            observed_url, min_size=1, max_size=2, init=init_connection
        )
        try:
            await Shop(EventStore(other, shop_upcasters())).handle(
                RestockProduct(Actor("ops-other", "staff"), sku, 5)
            )
        finally:
            await other.close()
        restocked = await gql(client, observed.url, RESTOCK, {"sku": sku, "q": 1}, STAFF)
        assert restocked["data"]["restockProduct"]["product"]["onHand"] == 9
        refused = await gql(
            client, observed.url, PLACE, {"lines": [{"sku": sku, "quantity": 50}]}, ALICE
        )
        assert refused["errors"][0]["extensions"]["code"] == "INSUFFICIENT_STOCK"
        # Orders arriving together are appended together.
        together = await asyncio.gather(
            *(
                gql(client, observed.url, PLACE, {"lines": [{"sku": sku, "quantity": 1}]}, ALICE)
                for _ in range(6)
            )
        )
        assert all(not r.get("errors") for r in together)
        query = await gql(
            client,
            observed.url,
            "query($s: String!) { product(sku: $s) { reserved } }",
            {"s": sku},
            ALICE,
        )
        assert query["data"]["product"]["reserved"] in range(8)
        while (await live.next_data("p"))["product"]["reserved"] != 7:
            pass

        during = await scrape(client, observed.url)
        assert total(during, "eventgraph_websocket_connections") >= 1
        assert total(during, "eventgraph_subscriptions", field="product") >= 1
        assert total(during, "eventgraph_shared_executions") >= 1
        assert total(during, "eventgraph_pool_connections") >= 1
        assert total(during, "eventgraph_fanout_connected") == 1

        # Kill every connection the server holds to its database.
        killed = 0
        for database in {observed_url, observed.read_url or observed_url}:
            admin = await asyncpg.connect(database)
            try:
                killed += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
        assert killed >= 4
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            after = await scrape(client, observed.url)
            moved = total(after, "eventgraph_projection_reconnects_total") > total(
                before, "eventgraph_projection_reconnects_total"
            )
            caught_up = total(after, "eventgraph_projection_lag_events") == 0
            fanout_back = (
                total(after, "eventgraph_fanout_reconnects_total")
                > total(before, "eventgraph_fanout_reconnects_total")
                and total(after, "eventgraph_fanout_connected") == 1
            )
            if moved and caught_up and fanout_back:
                break
            assert asyncio.get_running_loop().time() < deadline, "the server did not recover"
            await asyncio.sleep(0.2)
        await live.ws.close()

    def grew(name: str, **labels: str) -> None:
        assert total(after, name, **labels) > total(before, name, **labels), (name, labels)

    grew("eventgraph_commands_total", command="RegisterProduct", outcome="ok")
    grew("eventgraph_commands_total", command="PlaceOrder", outcome="ok")
    grew("eventgraph_commands_total", command="PlaceOrder", outcome="replayed")
    grew("eventgraph_commands_total", command="PlaceOrder", outcome="INSUFFICIENT_STOCK")
    grew("eventgraph_command_duration_seconds_count", command="PlaceOrder")
    grew("eventgraph_events_appended_total", type="OrderPlaced")
    grew("eventgraph_idempotent_replays_total")
    grew("eventgraph_append_conflicts_total")
    grew("eventgraph_command_retries_total")
    grew("eventgraph_command_group_size_count")
    grew("eventgraph_graphql_operations_total", type="mutation", outcome="ok")
    grew("eventgraph_graphql_operations_total", type="mutation", outcome="INSUFFICIENT_STOCK")
    grew("eventgraph_graphql_operations_total", type="query", outcome="ok")
    grew("eventgraph_graphql_operations_total", type="subscription", outcome="ok")
    grew("eventgraph_graphql_operation_duration_seconds_count", type="query")
    grew("eventgraph_projection_checkpoint", projection="products")
    grew("eventgraph_projection_head", projection="orders")
    grew("eventgraph_projection_batch_duration_seconds_count", projection="products")
    grew("eventgraph_projection_events_applied_total", projection="orders")
    grew("eventgraph_projection_reconnects_total", projection="products")
    grew("eventgraph_fanout_reconnects_total")
    grew("eventgraph_live_deliveries_total")
    grew("eventgraph_live_delivery_seconds_count")
    for name in [
        "eventgraph_projection_lag_events",
        "eventgraph_projection_lag_seconds",
        "eventgraph_projection_parked_events",
        "eventgraph_pool_connections_in_use",
        "eventgraph_live_superseded_total",
    ]:
        assert any(n == name for n, _ in after), name


async def test_json_logs_carry_the_request_id_into_the_events_appended(
    observed: Server,
) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    sku = f"LOG-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            observed.url + "/graphql",
            json={
                "query": REGISTER,
                "variables": {"sku": sku, "name": "Log", "price": "1.00", "stock": 1},
            },
            headers={**STAFF, "X-Request-Id": request_id},
        )
        assert response.headers["x-request-id"] == request_id
        correlation_id = response.headers["x-correlation-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", correlation_id)
        position = response.json()["data"]["registerProduct"]["position"]
        generated = []
        for forged in ['bad id "level": "ERROR"', "x" * 129, ""]:
            answered = await client.get(observed.url + "/healthz", headers={"X-Request-Id": forged})
            generated.append(answered.headers["x-request-id"])
            assert generated[-1] != forged and re.fullmatch(r"[0-9a-f]{32}", generated[-1])
            # without a plain id of its own, the request is named by its correlation id
            assert answered.headers["x-correlation-id"] == generated[-1]
        events = await gql(
            client,
            observed.url,
            EVENTS,
            {"after": position - 1, "first": 1, "stream": f"product-{sku}"},
            STAFF,
        )
    [event] = events["data"]["events"]
    metadata = (
        event["metadata"] if isinstance(event["metadata"], dict) else json.loads(event["metadata"])
    )
    assert metadata["correlationId"] == correlation_id
    assert metadata["requestId"] == request_id

    await asyncio.sleep(0.2)
    lines = Path(observed.log).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]  # every line is one object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    mine = [r for r in records if r.get("request_id") == request_id]
    assert any(
        r.get("path") == "/graphql"
        and r.get("status") == 200
        and r.get("correlation_id") == correlation_id
        for r in mine
    ), mine
    assert all("Bearer" not in line and METRICS_TOKEN not in line for line in lines)
    for request in generated:
        assert any(r.get("request_id") == request and r.get("path") == "/healthz" for r in records)


DOCKER = Path(__file__).parents[2] / "docker"


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The exported family a sample name in a query belongs to, if any."""
    if name in families:
        return name
    for suffix, kinds in [
        ("_total", {"counter"}),
        ("_bucket", {"histogram"}),
        ("_sum", {"histogram", "summary"}),
        ("_count", {"histogram", "summary"}),
    ]:
        base = name.removesuffix(suffix)
        if base != name and families.get(base) in kinds:
            return base
    return None


async def test_the_grafana_dashboard_queries_only_what_metrics_exports(observed: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            observed.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "eventgraph.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {n for e in exprs for n in re.findall(r"\beventgraph_[a-z_]+\b", e)}
    unknown = sorted(n for n in used if family_of(n, families) is None)
    assert not unknown, f"the dashboard queries metrics /metrics does not export: {unknown}"
    for needed in [
        "commands",
        "command_duration_seconds",
        "projection_lag_events",
        "websocket_connections",
        "live_delivery_seconds",
        "graphql_operations",
    ]:
        assert any(family_of(n, families) == f"eventgraph_{needed}" for n in used), needed


def test_status_shows_one_screen_from_the_servers_metrics(observed: Server) -> None:
    import os
    import subprocess
    import sys

    def status(token: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "EVENTGRAPH_METRICS_TOKEN"}
        if token:
            env["EVENTGRAPH_METRICS_TOKEN"] = token
        command = [sys.executable, "-m", "eventgraph.cli", "status", "--url", observed.url]
        return subprocess.run(
            [*command, "--interval", "0.2"], capture_output=True, text=True, env=env, timeout=30
        )

    shown = status(METRICS_TOKEN)
    assert shown.returncode == 0, shown.stderr
    assert "connections" in shown.stdout and "commands" in shown.stdout
    for name in [model.name for model in READ_MODELS]:  # every read model, each on its line
        assert any(line.startswith(name) for line in shown.stdout.splitlines()), shown.stdout
    refused = status(None)
    assert refused.returncode == 1 and "401" in refused.stdout
    assert METRICS_TOKEN not in refused.stdout + refused.stderr


async def test_websocket_operations_carry_the_connections_request_id(observed: Server) -> None:
    import websockets

    from tests.kit.ws import Client

    connection_id = f"ws-{uuid.uuid4().hex}"
    sku = f"WSLOG-{uuid.uuid4().hex[:8]}"
    socket = await websockets.connect(
        observed.url.replace("http", "ws") + "/graphql",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"X-Request-Id": connection_id},
    )
    client = Client(socket, "graphql-transport-ws")
    await client.send({"type": "connection_init", "payload": STAFF})
    assert (await client.recv())["type"] == "connection_ack"
    variables = {"sku": sku, "name": "Ws", "price": "1.00", "stock": 1}
    await client.subscribe("m", REGISTER, variables)  # a mutation over the socket
    registered = (await client.next_data("m"))["registerProduct"]
    await socket.close()
    async with httpx.AsyncClient(timeout=10) as http:
        found = await gql(
            http,
            observed.url,
            EVENTS,
            {"after": registered["position"] - 1, "first": 1, "stream": f"product-{sku}"},
            STAFF,
        )
    [event] = found["data"]["events"]
    # the operation's own correlation id, the connection's request id beside it
    assert event["metadata"]["requestId"] == f"{connection_id}.1"
    assert re.fullmatch(r"[0-9a-f]{32}", event["metadata"]["correlationId"])
    await asyncio.sleep(0.3)
    records = [json.loads(line) for line in Path(observed.log).read_text().splitlines() if line]
    assert any(
        r.get("request_id") == f"{connection_id}.1" and r.get("operation") == "mutation"
        for r in records
    )
    assert any(
        r.get("request_id") == connection_id and r.get("message", "").startswith("websocket closed")
        for r in records
    )


async def test_two_clients_sending_one_request_id_get_correlation_ids_of_their_own(
    observed: Server,
) -> None:
    """The client's X-Request-Id is kept beside the server's correlationId, never as it:
    two users (or one user's two sockets) that send the same id are still told apart."""
    import websockets

    from tests.kit.ws import Client

    shared = f"same-{uuid.uuid4().hex}"
    found = []
    async with httpx.AsyncClient(timeout=30) as client:
        for who in ["ops-carol", "ops-dave"]:
            headers = {"Authorization": f"Bearer {token(who, 'staff')}", "X-Request-Id": shared}
            sku = f"CORR-{uuid.uuid4().hex[:8]}"
            variables = {"sku": sku, "name": "C", "price": "1.00", "stock": 1}
            response = await client.post(
                observed.url + "/graphql",
                json={"query": REGISTER, "variables": variables},
                headers=headers,
            )
            assert response.headers["x-request-id"] == shared
            found.append((sku, response.headers.get("x-correlation-id")))
        for _ in range(2):  # two sockets, one id, each running its first operation
            socket = await websockets.connect(
                observed.url.replace("http", "ws") + "/graphql",
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                additional_headers={"X-Request-Id": shared},
            )
            ws = Client(socket, "graphql-transport-ws")
            await ws.send({"type": "connection_init", "payload": STAFF})
            assert (await ws.recv())["type"] == "connection_ack"
            sku = f"CORR-{uuid.uuid4().hex[:8]}"
            variables = {"sku": sku, "name": "C", "price": "1.00", "stock": 1}
            await ws.subscribe("m", REGISTER, variables)
            await ws.next_data("m")
            await socket.close()
            found.append((sku, None))
        metadata = []
        for sku, _ in found:
            events = await gql(
                client, observed.url, EVENTS, {"first": 1, "stream": f"product-{sku}"}, STAFF
            )
            [event] = events["data"]["events"]
            metadata.append(event["metadata"])
    correlations = [m["correlationId"] for m in metadata]
    assert len(set(correlations)) == 4, correlations
    assert [m["requestId"] for m in metadata] == [shared, shared, f"{shared}.1", f"{shared}.1"]
    for (_, answered), m in zip(found[:2], metadata[:2], strict=True):
        assert m["correlationId"] == answered  # the response names the events' correlation
    assert [m["actor"]["id"] for m in metadata[:2]] == ["ops-carol", "ops-dave"]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_websocket_mutations_log_line_names_the_correlation_id_of_its_events(
    observed: Server, protocol: str
) -> None:
    """The operation's log line was written before its ids were set: the events'
    correlationId appeared in no log line. Now the line carries it, as an HTTP request's
    does, so one leads to the other."""
    sku = f"WSCORR-{uuid.uuid4().hex[:8]}"
    client = await acked(observed.url, token("ops-staff", "staff"), protocol)
    variables = {"sku": sku, "name": "Ws", "price": "1.00", "stock": 1}
    await client.subscribe("m", REGISTER, variables)
    registered = (await client.next_data("m"))["registerProduct"]
    await client.ws.close()
    async with httpx.AsyncClient(timeout=10) as http:
        found = await gql(
            http,
            observed.url,
            EVENTS,
            {"after": registered["position"] - 1, "first": 1, "stream": f"product-{sku}"},
            STAFF,
        )
    [event] = found["data"]["events"]
    correlation_id = event["metadata"]["correlationId"]
    assert re.fullmatch(r"[0-9a-f]{32}", correlation_id)
    await asyncio.sleep(0.3)
    records = [json.loads(line) for line in Path(observed.log).read_text().splitlines() if line]
    mine = [r for r in records if r.get("correlation_id") == correlation_id]
    assert any(
        r.get("operation") == "mutation"
        and r.get("fields") == ["registerProduct"]
        and r.get("request_id") == event["metadata"]["requestId"]
        for r in mine
    ), mine
