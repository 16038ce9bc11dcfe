"""The ASGI application: /graphql, /healthz, /readyz."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from application.auth import TokenVerifier
from application.shop import Shop
from eventgraph.config import Settings
from eventgraph.readiness import readiness
from eventgraph.runtime import Runtime, open_runtime
from projections import READ_MODELS
from projections.live import LiveViews
from schema import build_schema
from schema.context import Services
from schema.cursors import Cursors
from schema.executor import Executor
from transport.http import graphql_http
from transport.multiplex import Multiplexer
from transport.ws import graphql_ws


async def healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings: Settings = request.app.state.settings
    report = await readiness(runtime, settings.max_lag_events)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


def create_app(
    dsn: str, settings: Settings | None = None, *, run_projectors: bool = True
) -> Starlette:
    settings = settings or Settings.from_env()
    jwt_secret, _ = settings.resolve_jwt_secret()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(
            dsn,
            run_projectors=run_projectors,
            broadcast_url=settings.broadcast_url,
            position_poll_seconds=settings.position_poll_seconds,
        ) as runtime:
            live = LiveViews(runtime.pool, runtime.watch, READ_MODELS)
            live.start()
            app.state.runtime = runtime
            app.state.settings = settings
            app.state.tokens = TokenVerifier(
                jwt_secret, audience=settings.jwt_audience, issuer=settings.jwt_issuer
            )
            app.state.services = Services(
                shop=Shop(runtime.store),
                store=runtime.store,
                pool=runtime.pool,
                watch=runtime.watch,
                cursors=Cursors(jwt_secret),
                read_wait_seconds=settings.read_wait_seconds,
                live=live,
                log_signal=runtime.log_signal,
            )
            app.state.schema = build_schema()
            app.state.executor = Executor(app.state.schema)
            try:
                yield
            finally:
                await live.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", graphql_http, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_ws),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sessions = set()
    app.state.connections_per_user = Counter()
    app.state.max_connections_per_user = settings.max_connections_per_user
    app.state.multiplexer = Multiplexer()
    return app
