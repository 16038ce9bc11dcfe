"""/readyz: each projection's checkpoint against the log's head, as JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventgraph.runtime import Runtime


async def readiness(runtime: Runtime, max_lag_events: int) -> dict[str, Any]:
    head = await runtime.store.head()
    rows = await runtime.pool.fetch(
        """
        SELECT p.name, p.position, p.status, p.error, p.generation,
               (SELECT e.recorded_at FROM eventgraph.events e
                 WHERE e.position > p.position AND e.position <= $1
                 ORDER BY e.position LIMIT 1) AS oldest_unapplied_at
          FROM eventgraph.projections p ORDER BY p.name
        """,
        head,
    )
    now = datetime.now(UTC)
    projections = {}
    ready = True
    for row in rows:
        lag_events = max(head - row["position"], 0)
        lag_seconds = (
            (now - row["oldest_unapplied_at"]).total_seconds()
            if row["oldest_unapplied_at"]
            else 0.0
        )
        healthy = row["status"] == "running" and lag_events <= max_lag_events
        ready = ready and healthy
        projections[row["name"]] = {
            "status": row["status"],
            "error": row["error"],
            "checkpoint": row["position"],
            "head": head,
            "lagEvents": lag_events,
            "lagSeconds": round(max(lag_seconds, 0.0), 3),
            "generation": row["generation"],
            "ready": healthy,
        }
    return {"ready": ready, "head": head, "projections": projections}
