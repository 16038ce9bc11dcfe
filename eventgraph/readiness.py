"""/readyz: each projection's checkpoint against the log's head, as JSON."""

from __future__ import annotations

from typing import Any

from eventgraph.runtime import Runtime
from projections.operations import status


async def readiness(runtime: Runtime, max_lag_events: int) -> dict[str, Any]:
    head = await runtime.store.head()
    return await status(runtime.reads, head, max_lag_events, detail=False, log=runtime.pool)
