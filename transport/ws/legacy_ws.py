"""The legacy `graphql-ws` protocol (subscriptions-transport-ws): `start`/`stop`, `data`,
keep-alive `ka`, `connection_error` before a refusal, and an `error` payload of one error."""

from __future__ import annotations

from typing import Any, ClassVar

from transport.ws.session import Close, Session, parse_subscribe

PROTOCOL = "graphql-ws"


class LegacyWsSession(Session):
    protocol: ClassVar[str] = PROTOCOL
    NEXT: ClassVar[str] = "data"

    def error_payload(self, errors: list[dict[str, Any]]) -> Any:
        return errors[0]

    async def refused(self, reason: str) -> None:
        await self.send({"type": "connection_error", "payload": {"message": reason}})

    async def acknowledged(self) -> None:
        await self.send({"type": "ka"})

    async def handle(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "connection_init":
                raise Close(4429, "Too many initialisation requests")
            case "start":
                await self.subscribe(parse_subscribe(message, self.subscriptions))
            case "stop":
                self.stop(message.get("id"))
            case "connection_terminate":
                raise Close(1000, "Normal closure")
            case kind:
                raise Close(4400, f"Invalid message type {kind!r}")
