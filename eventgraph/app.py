"""The ASGI application: /graphql (GraphiQL for a browser), /healthz, /readyz, and the
live dashboard at / with its assets under /static."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from application.auth import TokenVerifier
from application.shop import Shop
from eventgraph.config import ConfigError, Settings
from eventgraph.metrics import scrape
from eventgraph.pages import Assets, dashboard, exchange_endpoint, graphql_or_graphiql
from eventgraph.readiness import readiness
from eventgraph.runtime import Runtime, runtime_for
from eventstore.store import CONNECTION_ERRORS
from projections import READ_MODELS
from projections.live import LiveViews
from schema import build_schema
from schema.context import Services
from schema.cursors import Cursors
from schema.executor import Executor
from support import logs, requests
from support.collector import ScheduledFullCollections
from transport.origins import HostCheck, Hosts, Origins, header, refuse_host
from transport.state import Serving, TransportState, limit_per_user
from transport.ws import graphql_ws


@dataclass
class AppState:
    """Everything the application keeps, typed: `app.state.host` and `app.state.transport`."""

    settings: Settings
    transport: TransportState
    hosts: Hosts
    runtime: Runtime | None = None


class EventGraphApp(Starlette):
    """Starlette, but a GraphQL WebSocket goes straight to its handler: the HTTP middleware
    (error pages, CORS, which pass WebSockets through anyway) and the router would otherwise
    each keep a coroutine frame alive for every open socket, for its whole life."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)
            return
        state = host_state(self)
        host = header(scope, b"host")
        if scope["type"] == "websocket":
            if not state.hosts.allows(host):
                await refuse_host(scope, receive, send)
                return
            origin = header(scope, b"origin")
            if origin is not None and not state.transport.origins.allows(
                origin, host, scope["scheme"]
            ):
                await send(
                    {"type": "websocket.close", "code": 1008, "reason": "Origin not allowed"}
                )
                return  # before accept: HTTP 403
            # Not set in the context: a socket may live for hours, and its subscriptions
            # log with the id explicitly; its queries and mutations set their own (and
            # get a correlation id of their own with it: support.requests.correlation).
            scope["eventgraph.request_id"] = requests.accepted(header(scope, b"x-request-id"))
            if scope["path"] == "/graphql":
                scope["app"] = self
                await graphql_ws(WebSocket(scope, receive, send))
                return
            await super().__call__(scope, receive, send)
            return
        request_id, correlation_id = requests.begin(header(scope, b"x-request-id"))
        started = time.perf_counter()
        status = 500

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                    (b"x-correlation-id", correlation_id.encode()),
                ]
            await send(message)

        try:
            if state.hosts.allows(host):
                await super().__call__(scope, receive, send_with_ids)
            else:
                await refuse_host(scope, receive, send_with_ids)
        finally:
            path = logs.clip(scope["path"])
            requests_log.info(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )


requests_log = logging.getLogger("eventgraph.requests")


def host_state(app: Starlette) -> AppState:
    state: AppState = app.state.host
    return state


async def healthz(request: Request) -> JSONResponse:
    runtime = host_state(request.app).runtime
    assert runtime is not None
    return await _health(runtime)


async def readyz(request: Request) -> JSONResponse:
    state = host_state(request.app)
    assert state.runtime is not None
    return await _ready(state.runtime, state.settings, request)


async def _health(runtime: Runtime) -> JSONResponse:
    """200 while the database answers; 503, never 500, while it does not (a pooled
    connection it just dropped is retried once)."""
    for attempt in range(2):
        try:
            async with asyncio.timeout(2):
                for pool in {runtime.pool, runtime.reads}:
                    async with pool.acquire() as conn:
                        await conn.fetchval("SELECT 1")
            return JSONResponse({"status": "ok"})
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError):
            if attempt == 1:
                break
    return JSONResponse({"status": "database unavailable"}, status_code=503)


async def _ready(runtime: Runtime, settings: Settings, request: Request) -> JSONResponse:
    for attempt in range(2):
        try:
            async with asyncio.timeout(5):
                report = await readiness(
                    runtime, settings.max_lag_events, request=request, token=settings.metrics_token
                )
            return JSONResponse(report, status_code=200 if report["ready"] else 503)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError):
            if attempt == 1:
                break
    return JSONResponse({"ready": False, "error": "database unavailable"}, status_code=503)


async def metrics(request: Request) -> Response:
    state = host_state(request.app)
    assert state.runtime is not None
    return await scrape(request, state.runtime, state.transport, state.settings.metrics_token)


def create_app(
    dsn: str, settings: Settings | None = None, *, run_projectors: bool = True
) -> Starlette:
    settings = settings or Settings.from_env()
    jwt_secret, development = settings.resolve_jwt_secret()
    origins = Origins.parse(settings.cors_origins, development)
    hosts = _hosts(settings, development)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime_for(
            settings, dsn, run_projectors=run_projectors, publish=True
        ) as runtime:
            live = LiveViews(runtime.reads, runtime.watch, READ_MODELS)
            live.start()
            collections = ScheduledFullCollections()
            collections.start()
            state.runtime = runtime
            state.transport.serving = Serving(
                executor=Executor(build_schema()),
                tokens=TokenVerifier(
                    jwt_secret, audience=settings.jwt_audience, issuer=settings.jwt_issuer
                ),
                services=Services(
                    shop=runtime.shop or Shop(runtime.store),
                    store=runtime.store,
                    pool=runtime.reads,
                    watch=runtime.watch,
                    cursors=Cursors(jwt_secret),
                    read_wait_seconds=settings.read_wait_seconds,
                    live=live,
                    log_signal=runtime.log_signal,
                ),
            )
            try:
                yield
            finally:
                await collections.stop()
                await live.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/graphql", graphql_or_graphiql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_ws),
        Route("/", dashboard),
        Route("/auth/exchange", exchange_endpoint(jwt_secret, settings), methods=["POST"]),
        Mount("/static", Assets()),
    ]
    state = AppState(settings, TransportState(settings.max_connections_per_user, origins), hosts)
    limit_per_user(
        state.transport,
        operations=settings.max_operations_per_user,
        subscriptions=settings.max_subscriptions_per_user,
    )
    app = EventGraphApp(routes=routes, lifespan=lifespan, middleware=origins.middleware())
    app.router.redirect_slashes = False  # a redirect would be built from the Host header
    app.state.host = state
    app.state.transport = state.transport
    return app


def create_projector_app(runtime: Runtime, settings: Settings) -> Starlette:
    """What `eventgraph project --port` serves beside its projectors: /healthz, /readyz
    (its container's health check) and /metrics, for the same operators as the API's."""
    transport = TransportState(settings.max_connections_per_user, Origins.parse(None, False))

    async def health(_request: Request) -> JSONResponse:
        return await _health(runtime)

    async def ready(request: Request) -> JSONResponse:
        return await _ready(runtime, settings, request)

    async def projector_metrics(request: Request) -> Response:
        return await scrape(request, runtime, transport, settings.metrics_token)

    app = Starlette(
        routes=[
            Route("/healthz", health),
            Route("/readyz", ready),
            Route("/metrics", projector_metrics),
        ],
        middleware=[Middleware(HostCheck, hosts=_hosts(settings, settings.jwt_secret is None))],
    )
    app.router.redirect_slashes = False
    return app


def _hosts(settings: Settings, development: bool) -> Hosts:
    try:
        hosts = Hosts.parse(settings.allowed_hosts, development)
    except ValueError as exc:
        raise ConfigError(f"EVENTGRAPH_ALLOWED_HOSTS: {exc}") from None
    if hosts.unchecked:
        logging.getLogger("eventgraph").warning(
            "EVENTGRAPH_ALLOWED_HOSTS is not set: any Host header is accepted, so a page on"
            " a name rebound to this server (DNS rebinding) can reach it; set it to the"
            " names clients use"
        )
    return hosts
