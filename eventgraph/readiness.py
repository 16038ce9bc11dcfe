"""/readyz: each projection's checkpoint against the log's head, as JSON.

With EVENTGRAPH_METRICS_TOKEN set, the report (parked events with operators' reasons, event
ids, errors) goes only to a caller with that token, as /metrics does; anyone else gets
`{"ready": true|false}` with the same status code, which is all a load balancer or a
container's health check needs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from application.reactions import reaction_status
from eventgraph.metrics import authorised
from eventgraph.runtime import Runtime
from projections.operations import status


async def readiness(
    runtime: Runtime,
    max_lag_events: int,
    *,
    request: Request | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    head = await runtime.store.head()
    report = await status(runtime.reads, head, max_lag_events, detail=False, log=runtime.pool)
    if request is not None and not authorised(request, token):
        return {"ready": report["ready"]}
    # Beside the projections, for the operator: a reaction that lags or has stopped delays
    # deadlines, not reads, so it does not make this process unready.
    active = [r.name for r in runtime.reactors] or None
    return report | {"reactions": await reaction_status(runtime.pool, head, active)}
