"""The ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventgraph.config import Settings
from eventgraph.runtime import Runtime, open_runtime


async def healthz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    async with runtime.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return JSONResponse({"status": "ok"})


def create_app(dsn: str, settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_runtime(dsn) as runtime:
            app.state.runtime = runtime
            app.state.settings = settings
            yield

    return Starlette(routes=[Route("/healthz", healthz)], lifespan=lifespan)
