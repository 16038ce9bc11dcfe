"""/readyz: each projection's checkpoint against the log's head, as JSON."""

from __future__ import annotations

from typing import Any

from eventgraph.runtime import Runtime
from projections.operations import status


async def readiness(runtime: Runtime, max_lag_events: int) -> dict[str, Any]:
    return await status(runtime.pool, await runtime.store.head(), max_lag_events, detail=False)
