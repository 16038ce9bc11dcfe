"""(Long on purpose: one session's whole life, which every protocol shares.) What both
WebSocket protocols share: a session's life (init and auth within a deadline,
the per-user cap, the token's expiry, draining on shutdown), reading frames, and running an
operation (a query, a live view shared with identical subscribers, or the events feed).

Each protocol (`transport_ws.py`, `legacy_ws.py`) parses its own typed messages and says how
its messages are named and shaped; nothing here asks which protocol it is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Collection, Hashable
from typing import Any, ClassVar, TypedDict

import orjson
from graphql import ExecutionResult, FieldNode, GraphQLError, OperationDefinitionNode, OperationType
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from application.auth import AuthError, Principal, TokenVerifier, bearer
from schema.context import Context
from schema.errors import format_error
from schema.executor import Executor
from schema.limits import too_deep
from schema.results import as_graphql_error, count, payload, session_position
from schema.sharing import SHARED
from support import metrics, requests
from support.background import close_quietly
from transport.state import OverLimit, over_limit, transport_state

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 100
MAX_MESSAGE_BYTES = 64 * 1024
"""Also the transport's frame limit (`eventgraph serve` sets uvicorn's `ws_max_size` to it),
so that no larger frame is ever buffered, before `connection_init` or after."""
INIT_TIMEOUT = 10.0


class Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Subscribe(TypedDict):
    """`subscribe` (graphql-transport-ws) or `start` (graphql-ws): the same shape in both."""

    id: str
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    at_least: int | str
    """The payload's `extensions.atLeast` (0: none), or what is wrong with it."""


def parse_subscribe(message: dict[str, Any], running: Collection[str]) -> Subscribe:
    """A subscribe message, checked in the protocol's order: its id, then that the id is not
    already running (4409), then its payload."""
    op_id, body = message.get("id"), message.get("payload")
    if not isinstance(op_id, str) or not op_id or len(op_id) > 200 or not isinstance(body, dict):
        raise Close(4400, "Invalid subscribe message")
    if op_id in running:
        raise Close(4409, f"Subscriber for {op_id} already exists")
    query, variables = body.get("query"), body.get("variables")
    operation_name = body.get("operationName")
    if (
        not isinstance(query, str)
        or (operation_name is not None and not isinstance(operation_name, str))
        or (variables is not None and not isinstance(variables, dict))
        or too_deep(variables)
    ):
        raise Close(4400, "Invalid subscribe payload")
    at_least = session_position(body.get("extensions"))
    return Subscribe(
        id=op_id,
        query=query,
        variables=variables,
        operation_name=operation_name,
        at_least=at_least,
    )


def root_fields(document: Any, operation_name: str | None) -> list[str]:
    """The root fields an operation selects (names from the schema, the document being valid)."""
    operation = next(
        (
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name and d.name.value == operation_name))
        ),
        None,
    )
    if operation is None:
        return []
    return [s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)]


_EXPIRING: set[asyncio.Task[None]] = set()
"""Sessions closing because their token expired (held so the tasks are not collected)."""


class Session(ABC):
    protocol: ClassVar[str]
    NEXT: ClassVar[str]
    """The type of a result message: `next` or `data`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.state = transport_state(websocket.app)
        serving = self.state.ready
        self.executor: Executor = serving.executor
        self.tokens: TokenVerifier = serving.tokens
        self.services = serving.services
        self.principal: Principal | None = None
        self.counted: str | None = None
        """The user this connection counts against in the per-user cap, once accepted."""
        self.subscriptions: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self.request_id: str = websocket.scope.get("eventgraph.request_id") or requests.accepted(
            None
        )
        """The connection's; its operations' are this plus `.1`, `.2`, ..."""
        self._operations = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(orjson.dumps(message).decode())

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(text)

    async def drain(self) -> None:
        """Server shutdown: stop every subscription and close with 1012 (service restart).
        No `complete` is sent: the views are not over, and a client (graphql-ws retries on
        1012) reconnects, to this server once it is back or to another replica, and
        subscribes again, getting each current view first."""
        for task in self.subscriptions.values():
            task.cancel()
        await self.close(1012, "Server restarting: reconnect")

    async def run(self) -> None:
        expiry: asyncio.TimerHandle | None = None
        sessions = self.state.sessions
        sessions.add(self)
        metrics.WEBSOCKETS.inc()
        started = time.monotonic()
        try:
            async with asyncio.timeout(INIT_TIMEOUT):
                first = await self.receive()
            await self.init(first)
            expiry = self.expire_later()
            while True:
                await self.handle(await self.receive())
        except Close as close:
            await self.close(close.code, close.reason)
        except (WebSocketDisconnect, asyncio.CancelledError):
            pass
        except TimeoutError:
            await self.close(4408, "Connection initialisation timeout")
        finally:
            sessions.discard(self)
            metrics.WEBSOCKETS.dec()
            log.info(
                "websocket closed after %d operations",
                self._operations,
                extra={
                    "path": "/graphql",
                    "duration_ms": round((time.monotonic() - started) * 1000),
                    "subscriptions": len(self.subscriptions),
                    "request_id": self.request_id,
                },
            )
            if self.counted is not None:
                per_user = self.state.connections_per_user
                per_user[self.counted] -= 1
                if per_user[self.counted] <= 0:
                    del per_user[self.counted]
            if expiry is not None:
                expiry.cancel()
            for task in self.subscriptions.values():
                task.cancel()
            if self.subscriptions:
                await asyncio.gather(*self.subscriptions.values(), return_exceptions=True)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.close(code, reason)

    def expire_later(self) -> asyncio.TimerHandle:
        """Close the socket when the token expires: a timer, not a task per connection (a
        sleeping task would keep a coroutine, a future and a context alive for each)."""
        assert self.principal is not None
        loop = asyncio.get_running_loop()
        delay = max(self.principal.expires_at - time.time(), 0)
        return loop.call_later(delay, self._on_expiry)

    def _on_expiry(self) -> None:
        task = asyncio.get_running_loop().create_task(self.expire())
        _EXPIRING.add(task)
        task.add_done_callback(_EXPIRING.discard)

    async def expire(self) -> None:
        for task in self.subscriptions.values():
            task.cancel()
        await self.close(4403, "Forbidden: the token has expired")

    async def receive(self) -> dict[str, Any]:
        frame = await self.ws.receive()
        if frame["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(frame.get("code", 1000))
        text = frame.get("text")
        if text is None:
            raise Close(4400, "Invalid message: binary frames are not part of the protocol")
        if len(text) > MAX_MESSAGE_BYTES:
            raise Close(4400, "Message too large")
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise Close(4400, "Invalid message: not JSON") from None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise Close(4400, "Invalid message: no type")
        return message

    async def init(self, message: dict[str, Any]) -> None:
        if message["type"] != "connection_init":
            raise Close(4401, "Unauthorized: connection_init first")
        payload = message.get("payload") or {}
        header = (
            payload.get("Authorization") or payload.get("authorization")
            if isinstance(payload, dict)
            else None
        )
        try:
            token = bearer(header if isinstance(header, str) else None)
            if token is None:
                raise AuthError('no token: send {"Authorization": "Bearer <token>"}')
            self.principal = self.tokens.verify(token)
        except AuthError as exc:
            await self.refused(str(exc))
            raise Close(4403, "Forbidden") from None
        per_user = self.state.connections_per_user
        if per_user[self.principal.sub] >= self.state.max_connections_per_user:
            self.principal = None
            raise Close(1008, "Too many connections for this user")
        per_user[self.principal.sub] += 1
        self.counted = self.principal.sub
        await self.send({"type": "connection_ack"})
        await self.acknowledged()

    async def refused(self, reason: str) -> None:  # noqa: B027 - optional hook
        """Before the 4403 close: a protocol may say why."""

    async def acknowledged(self) -> None:  # noqa: B027 - optional hook
        """After `connection_ack`."""

    @abstractmethod
    def error_payload(self, errors: list[dict[str, Any]]) -> Any:
        """An `error` message's payload: the list, or its first error."""

    @abstractmethod
    async def handle(self, message: dict[str, Any]) -> None:
        """One message after `connection_init`, parsed by the protocol."""

    def stop(self, op_id: object) -> None:
        task = self.subscriptions.pop(str(op_id), None)
        if task is not None:
            task.cancel()

    async def subscribe(self, message: Subscribe) -> None:
        op_id, query, variables = message["id"], message["query"], message["variables"]
        operation_name = message["operation_name"]
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            await self.error(
                op_id,
                [
                    GraphQLError(
                        f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                        extensions={"code": "BAD_REQUEST"},
                    )
                ],
            )
            return
        at_least = message["at_least"]
        if isinstance(at_least, str):  # this operation's mistake: the others go on
            await self.error(op_id, [GraphQLError(at_least, extensions={"code": "BAD_REQUEST"})])
            return
        prepared = self.executor.prepare(query)
        if prepared.document is None:
            await self.error(op_id, list(prepared.errors))
            return
        operation = prepared.operation_type(operation_name)
        if isinstance(operation, GraphQLError):
            await self.error(op_id, [operation])
            return
        counted = self.count_subscription() if operation is OperationType.SUBSCRIPTION else None
        if counted is False:
            limit = self.state.max_subscriptions_per_user
            await self.error(
                op_id,
                [
                    GraphQLError(
                        f"at most {limit} subscriptions per user, across all its connections",
                        extensions={"code": "BAD_REQUEST"},
                    )
                ],
            )
            return
        self._operations += 1
        request_id = f"{self.request_id}.{self._operations}"
        context = Context(
            services=self.services, principal=self.principal, session_at_least=at_least
        )
        task = asyncio.create_task(
            self.run_operation(
                op_id,
                query,
                prepared.document,
                operation,
                variables,
                operation_name,
                request_id,
                context,
            )
        )
        self.subscriptions[op_id] = task
        task.add_done_callback(
            lambda t: (
                self.subscriptions.pop(op_id, None) if self.subscriptions.get(op_id) is t else None
            )
        )
        if counted:
            task.add_done_callback(lambda _: self.uncount_subscription())

    def count_subscription(self) -> bool:
        """Count one more subscription of this user in this process, if it is within the
        per-user limit: the per-connection cap alone let one user hold 64 sockets' worth."""
        assert self.principal is not None
        per_user = self.state.subscriptions_per_user
        limit = self.state.max_subscriptions_per_user
        if limit and per_user[self.principal.sub] >= limit:
            return False
        per_user[self.principal.sub] += 1
        return True

    def uncount_subscription(self) -> None:
        assert self.principal is not None
        per_user = self.state.subscriptions_per_user
        per_user[self.principal.sub] -= 1
        if per_user[self.principal.sub] <= 0:
            del per_user[self.principal.sub]

    async def error(self, op_id: str, errors: list[GraphQLError]) -> None:
        formatted = [format_error(e) for e in errors]
        await self.send({"type": "error", "id": op_id, "payload": self.error_payload(formatted)})

    async def run_operation(
        self,
        op_id: str,
        query: str,
        document: Any,
        operation: OperationType,
        variables: Any,
        operation_name: Any,
        request_id: str,
        context: Context,
    ) -> None:
        fields = root_fields(document, operation_name)
        correlation_id = None
        if operation is not OperationType.SUBSCRIPTION:
            # Set before the log line, so that it names the correlation id the events carry.
            requests.REQUEST_ID.set(request_id)
            correlation_id = requests.correlation()
        log.info(
            "%s %s",
            operation.value,
            ",".join(fields),
            extra={
                "operation": operation.value,
                "fields": fields,
                "request_id": request_id,
                "correlation_id": correlation_id,
            },
        )
        field = fields[0] if fields else metrics.UNKNOWN
        del fields  # nothing per subscription is kept that need not be
        started = time.perf_counter()
        try:
            if operation is not OperationType.SUBSCRIPTION:
                try:
                    sub = self.principal.sub if self.principal else None
                    async with self.state.operations.hold(sub):
                        result = await self.executor.execute(
                            document, context, variables, operation_name
                        )
                except OverLimit as refusal:
                    result = ExecutionResult(None, [over_limit(refusal)])
                count(operation, result, time.perf_counter() - started)
                body = payload(result, context.appended)
                await self.send({"type": self.NEXT, "id": op_id, "payload": body})
                await self.send({"type": "complete", "id": op_id})
                return
            del request_id
            metrics.SUBSCRIPTIONS.labels(field).inc()
            try:
                key = self.share_key(context, document, variables, operation_name)
                if key is not None:
                    count(operation, None, time.perf_counter() - started)
                    await self.relay_shared(
                        op_id, key, document, context, variables, operation_name
                    )
                    return
                stream = await self.executor.subscribe(document, context, variables, operation_name)
                failed = stream if isinstance(stream, ExecutionResult) else None
                count(operation, failed, time.perf_counter() - started)
                if failed is not None:
                    await self.error(op_id, list(failed.errors or []))
                    return
                assert not isinstance(stream, ExecutionResult)
                await self.relay(op_id, stream)
                await self.send({"type": "complete", "id": op_id})
            finally:
                metrics.SUBSCRIPTIONS.labels(field).dec()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a resolver's error ends the subscription, with its code
            await self.error(op_id, [as_graphql_error(exc)])

    def share_key(
        self, context: Context, document: Any, variables: Any, operation_name: Any
    ) -> Hashable | None:
        """Live views whose result depends only on the document, its variables and the
        caller's role (or, for an order, the caller) share one execution; `events` never
        does, since each subscriber catches up from its own position. Nor does one given a
        session `atLeast`: a shared execution's current view may predate it."""
        if self.principal is None or context.session_at_least:
            return None
        roots = set(root_fields(document, operation_name))
        scopes = [SHARED.get(root) for root in roots]
        if not roots or None in scopes:
            return None
        who = self.principal.sub if "user" in scopes else None
        return (
            id(document),
            orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS),
            operation_name,
            self.principal.role,
            who,
        )

    async def relay_shared(
        self,
        op_id: str,
        key: Hashable,
        document: Any,
        context: Context,
        variables: Any,
        operation_name: Any,
    ) -> None:
        multiplexer = self.state.multiplexer
        member = multiplexer.join(
            key, lambda: self.executor.subscribe(document, context, variables, operation_name)
        )
        head = f'{{"type":"{self.NEXT}","id":{orjson.dumps(op_id).decode()},"payload":'
        try:
            while (payload := await member.take()) is not None:
                await self.send_text(head + payload.decode() + "}")
                metrics.LIVE_DELIVERIES.inc()
            ended = member.shared.ended
            if ended is not None and ended[0] == "error":
                errors = orjson.loads(ended[1])
                await self.send(
                    {"type": "error", "id": op_id, "payload": self.error_payload(errors)}
                )
            else:
                await self.send({"type": "complete", "id": op_id})
        finally:
            member.shared.leave(member)

    async def relay(self, op_id: str, stream: AsyncIterator[ExecutionResult]) -> None:
        try:
            async for result in stream:
                await self.send({"type": self.NEXT, "id": op_id, "payload": payload(result)})
                metrics.LIVE_DELIVERIES.inc()
                if result.errors and result.data is None:
                    return
        finally:
            await close_quietly(stream)
