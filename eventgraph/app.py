"""The ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from domain.upcasters import UPCASTERS
from eventgraph.auth import TokenVerifier
from eventgraph.commands import Shop
from eventgraph.config import Settings
from eventgraph.graphql_http import graphql_http
from eventgraph.runtime import Runtime, open_runtime
from eventstore.upcasting import UpcasterRegistry
from schema import build_schema


def shop_upcasters() -> UpcasterRegistry:
    registry = UpcasterRegistry()
    for event_type, from_version, upcaster in UPCASTERS:
        registry.register(event_type, from_version, upcaster)
    return registry


async def healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


def create_app(dsn: str, settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    jwt_secret, _ = settings.resolve_jwt_secret()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(dsn, shop_upcasters()) as runtime:
            app.state.runtime = runtime
            app.state.settings = settings
            app.state.tokens = TokenVerifier(jwt_secret)
            app.state.shop = Shop(runtime.store)
            app.state.schema = build_schema()
            yield

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql_http, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
