"""The `graphql-transport-ws` protocol (graphql-ws's current one): which client messages it
has (a `subscribe` is parsed into the typed `Subscribe`), and how it names and shapes its
own."""

from __future__ import annotations

from typing import Any, ClassVar

from transport.ws.session import Close, Session, parse_subscribe

PROTOCOL = "graphql-transport-ws"


class TransportWsSession(Session):
    protocol: ClassVar[str] = PROTOCOL
    NEXT: ClassVar[str] = "next"

    def error_payload(self, errors: list[dict[str, Any]]) -> Any:
        return errors

    async def handle(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "connection_init":
                raise Close(4429, "Too many initialisation requests")
            case "ping":
                await self.send({"type": "pong", "payload": message.get("payload")})
            case "pong":
                pass
            case "subscribe":
                await self.subscribe(parse_subscribe(message, self.subscriptions))
            case "complete":
                self.stop(message.get("id"))
            case kind:
                raise Close(4400, f"Invalid message type {kind!r}")
