"""A GraphQL-over-WebSocket test client for both protocols, and the subscription documents
the tests send."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

PRODUCT_SUB = (
    "subscription($sku: String!) { product(sku: $sku) { sku onHand reserved available position } }"
)
ORDER_SUB = "subscription($id: ID!) { order(id: $id) { id status version position } }"
MY_ORDERS = "subscription { myOrders { id status position } }"
DASHBOARD_SUB = "subscription { salesDashboard { ordersPlaced position } }"
EVENTS_SUB = "subscription($after: Position, $stream: String) { events(after: $after, streamId: $stream) { position streamId streamVersion type } }"


class Client:
    def __init__(self, ws: Any, protocol: str) -> None:
        self.ws, self.protocol = ws, protocol

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, seconds: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), seconds))
        return message

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        kind = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        await self.send(
            {"type": kind, "id": op_id, "payload": {"query": query, "variables": variables or {}}}
        )

    async def next_data(self, op_id: str, seconds: float = 10) -> dict[str, Any]:
        while True:
            message = await self.recv(seconds)
            if message["type"] in ("ka", "ping", "pong"):
                continue
            assert message.get("id") == op_id and message["type"] in ("next", "data"), message
            assert not message["payload"].get("errors"), message
            data: dict[str, Any] = message["payload"]["data"]
            return data


async def connect(url: str, bearer: str | None, protocol: str = "graphql-transport-ws") -> Client:
    ws = await websockets.connect(url.replace("http", "ws") + "/graphql", subprotocols=[protocol])
    client = Client(ws, protocol)
    payload = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    await client.send({"type": "connection_init", "payload": payload})
    return client


async def acked(url: str, bearer: str, protocol: str = "graphql-transport-ws") -> Client:
    client = await connect(url, bearer, protocol)
    assert (await client.recv())["type"] == "connection_ack"
    return client
