"""The production application plus the baselines the benchmarks compare against: the same
read as the `product` query with no GraphQL, and a plain Starlette WebSocket broadcast. Never
part of the service: `bench/server.py` runs it with uvicorn's factory mode."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from eventgraph.app import create_app
from eventgraph.config import Settings
from projections import products
from schema.context import Services


async def bench_product(request: Request) -> JSONResponse:
    """The same read as the `product` query, with no GraphQL: the baseline of bench/."""
    services: Services = request.app.state.transport.ready.services
    view = await products.product(services.pool, request.query_params.get("sku", ""))
    if view is None:
        return JSONResponse({"product": None})
    return JSONResponse(
        {
            "product": {
                "sku": view.sku,
                "name": view.name,
                "unitPrice": str(view.unit_price),
                "onHand": view.on_hand,
                "reserved": view.reserved,
                "available": view.available,
                "position": view.position,
                "updatedAt": view.updated_at.isoformat(),
            }
        }
    )


async def bench_ws(websocket: WebSocket) -> None:
    """A plain Starlette WebSocket that receives broadcasts: the baseline of bench/."""
    await websocket.accept()
    clients: set[WebSocket] = websocket.app.state.bench_clients
    clients.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(websocket)


async def bench_broadcast(request: Request) -> JSONResponse:
    message = (await request.body()).decode()
    clients = list(request.app.state.bench_clients)
    await asyncio.gather(*(c.send_text(message) for c in clients), return_exceptions=True)
    return JSONResponse({"sent": len(clients)})


async def bench_objects(_request: Request) -> JSONResponse:
    """The objects the garbage collector tracks, by type, most numerous first: where the
    per-connection objects (and full-collection pauses) come from."""
    import collections
    import gc

    objects = gc.get_objects()
    counts = collections.Counter(type(o).__qualname__ for o in objects)
    kind = _request.query_params.get("referrers")
    referrers: collections.Counter[str] = collections.Counter()
    if kind:  # who holds the objects of this type (a sample of 2,000)
        sample = [o for o in objects if type(o).__qualname__ == kind][-2000:]
        for o in sample:
            for r in gc.get_referrers(o):
                if r is not sample and r is not objects:
                    name = type(r).__qualname__
                    if isinstance(r, dict):
                        name += ":" + ",".join(sorted(str(k) for k in list(r)[:4]))
                    elif hasattr(r, "cr_code"):
                        name += ":" + r.cr_code.co_qualname
                    referrers[name[:100]] += 1
    return JSONResponse(
        {
            "total": sum(counts.values()),
            "byType": counts.most_common(40),
            "referrers": referrers.most_common(15),
        }
    )


def log_gc_pauses(path: str) -> None:
    """Write every garbage collection over 10 ms to `path` (BENCH_GC_LOG): to tell a pause
    of the collector from one of the database or the machine."""
    import gc
    import time

    started: list[float] = []

    def timing(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            ms = (time.perf_counter() - started[0]) * 1000
            if ms > 10:
                tracked = len(gc.get_objects()) if info["generation"] == 2 else 0
                with open(path, "a") as out:
                    out.write(
                        f"{time.time():.3f} gen{info['generation']} {ms:.0f} ms"
                        f" {tracked} objects tracked\n"
                    )

    gc.callbacks.append(timing)


def create() -> Starlette:
    """`DATABASE_URL` must be set: the benchmarks bring their own database."""
    import os

    if os.environ.get("BENCH_GC_LOG"):
        log_gc_pauses(os.environ["BENCH_GC_LOG"])
    if os.environ.get("BENCH_GC_THRESHOLDS"):
        import gc

        gc.set_threshold(*(int(n) for n in os.environ["BENCH_GC_THRESHOLDS"].split(",")))
    settings = Settings.from_env()
    assert settings.database_url, "DATABASE_URL"
    app = create_app(settings.database_url, settings)
    app.state.bench_clients = set()
    app.router.add_route("/bench/product", bench_product)
    app.router.add_route("/bench/objects", bench_objects)
    app.router.add_route("/bench/broadcast", bench_broadcast, methods=["POST"])
    app.router.add_websocket_route("/bench/ws", bench_ws)
    return app
