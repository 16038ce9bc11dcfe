"""GraphQL over WebSocket on /graphql: the `graphql-transport-ws` protocol and the legacy
`graphql-ws` one, one module each over a shared session core. Auth comes in
`connection_init` ({"Authorization": "Bearer …"}); a missing or bad token closes with 4403,
and so does the token's expiry."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket

from transport.state import OpenSession, transport_state
from transport.ws.legacy_ws import LegacyWsSession
from transport.ws.session import MAX_MESSAGE_BYTES, MAX_SUBSCRIPTIONS, Session
from transport.ws.transport_ws import TransportWsSession

PROTOCOLS: dict[str, type[Session]] = {
    TransportWsSession.protocol: TransportWsSession,
    LegacyWsSession.protocol: LegacyWsSession,
}
"""In order of preference, when a client offers both."""

__all__ = ["MAX_MESSAGE_BYTES", "MAX_SUBSCRIPTIONS", "Session", "drain_sessions", "graphql_ws"]


async def graphql_ws(websocket: WebSocket) -> None:
    origin = websocket.headers.get("origin")
    origins = transport_state(websocket.app).origins
    if origin is not None and not origins.allows(origin, websocket.headers.get("host")):
        await websocket.close(1008, "Origin not allowed")  # before accept: HTTP 403
        return
    offered = websocket.scope.get("subprotocols") or []
    protocol = next((p for p in PROTOCOLS if p in offered), None)
    if protocol is None:
        # Accepted, then closed, so that a browser sees 4406 (a refusal before accept is an
        # HTTP 403, which it reports as 1006, the same as a refused origin). A browser fails
        # a handshake whose answer names none of the subprotocols it offered, so the answer
        # echoes the first one offered; no message is read on this socket.
        await websocket.accept(subprotocol=offered[0] if offered else None)
        await websocket.close(4406, "Subprotocol not acceptable: use graphql-transport-ws")
        return
    await websocket.accept(subprotocol=protocol)
    await PROTOCOLS[protocol](websocket).run()


async def drain_sessions(sessions: set[OpenSession], seconds: float = 3.0) -> None:
    if sessions:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.gather(*(s.drain() for s in list(sessions)), return_exceptions=True)
