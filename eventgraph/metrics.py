"""/metrics in the Prometheus text format: what the layers counted (support/metrics.py),
plus the levels read at scrape time: each projection's checkpoint, head, lag and parked
events (the numbers /readyz reports), the pool, the shared executions.

With EVENTGRAPH_METRICS_TOKEN set, a scrape must carry `Authorization: Bearer <it>` (401
otherwise, compared in constant time); unset, /metrics is open, which is fine on a private
network and not in production."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from typing import Any

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from application.reactions import reaction_status
from eventgraph.runtime import Runtime
from eventstore.store import CONNECTION_ERRORS
from projections.operations import status
from support import metrics
from transport.state import TransportState

log = logging.getLogger(__name__)


async def refresh_levels(runtime: Runtime, transport: TransportState) -> dict[str, Any]:
    """Set the gauges that are levels rather than events; returns the projections' report."""
    head = await runtime.store.head()
    report = await status(runtime.reads, head, 0, detail=False, log=runtime.pool)
    for name, p in report["projections"].items():
        metrics.PROJECTION_CHECKPOINT.labels(name).set(p["checkpoint"])
        metrics.PROJECTION_HEAD.labels(name).set(p["head"])
        metrics.PROJECTION_LAG_EVENTS.labels(name).set(p["lagEvents"])
        metrics.PROJECTION_LAG_SECONDS.labels(name).set(p["lagSeconds"])
        metrics.PARKED_EVENTS.labels(name).set(len(p["parked"]))
    active = [r.name for r in runtime.reactors] or None
    for name, r in (await reaction_status(runtime.pool, head, active)).items():
        if r["status"] == "off":
            continue
        metrics.REACTION_CHECKPOINT.labels(name).set(r["checkpoint"])
        metrics.REACTION_LAG_EVENTS.labels(name).set(r["lagEvents"])
        metrics.TIMERS_PENDING.labels(name).set(r["timersPending"])
        metrics.TIMERS_OVERDUE.labels(name).set(r["oldestOverdueSeconds"])
    for relay in await runtime.pool.fetch(
        "SELECT name, position FROM eventgraph.relay_checkpoints"
    ):
        metrics.RELAY_LAG_EVENTS.labels(relay["name"]).set(max(head - relay["position"], 0))
    pools = {runtime.pool, runtime.reads}
    metrics.POOL_SIZE.set(sum(p.get_size() for p in pools))
    metrics.POOL_IN_USE.set(sum(p.get_size() - p.get_idle_size() for p in pools))
    metrics.SHARED_EXECUTIONS.set(len(transport.multiplexer))
    return report


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


async def scrape(
    request: Request, runtime: Runtime, transport: TransportState, token: str | None
) -> Response:
    if not authorised(request, token):
        return JSONResponse(
            {"error": "metrics need 'Authorization: Bearer <EVENTGRAPH_METRICS_TOKEN>'"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    # A database that is away (or a pooled connection it just dropped) must not cost the
    # scrape: try twice, briefly, then export the levels as last read, and say so in the log.
    for attempt in range(2):
        try:
            async with asyncio.timeout(2):
                await refresh_levels(runtime, transport)
            break
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:
            if attempt == 1:
                log.warning("metrics: projection levels not refreshed: %r", exc)
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
