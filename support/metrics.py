"""The service's Prometheus metrics, in one place: every family `/metrics` exports, named
`eventgraph_*` after Prometheus conventions (base units, `_total` counters, `_seconds`).

The layers count as things happen (a command, an append, a projector batch, a view handed
to its subscribers); what is a level rather than an event (a projection's lag, open sockets,
the pool in use) is read at scrape time by `eventgraph/metrics.py`. Label values come from
closed sets (command and event type names, projection names, the contract's error codes,
root field names of the schema), never from what a client sends, so no request can grow
the number of series.

With `PROMETHEUS_MULTIPROC_DIR` set before start, prometheus-client keeps the values in
files shared by the processes behind one port, and the endpoint sums them; the gauges say
how (`multiprocess_mode`)."""

from __future__ import annotations

import bisect
import time
from collections import deque
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

LATENCY: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

COMMANDS = Counter(
    "eventgraph_commands",
    "Commands handled, by command and outcome (ok, replayed, or the contract's error code).",
    ["command", "outcome"],
)
COMMAND_SECONDS = Histogram(
    "eventgraph_command_duration_seconds",
    "Time to handle a command, from its arrival to its result.",
    ["command"],
    buckets=LATENCY,
)
EVENTS_APPENDED = Counter(
    "eventgraph_events_appended", "Events appended to the log, by event type.", ["type"]
)
APPEND_CONFLICTS = Counter(
    "eventgraph_append_conflicts",
    "Appends refused because a stream had moved on (another process wrote to it).",
)
COMMAND_RETRIES = Counter(
    "eventgraph_command_retries", "Commands decided again after an append conflict."
)
IDEMPOTENT_REPLAYS = Counter(
    "eventgraph_idempotent_replays",
    "Commands answered with the first result of their idempotency key, appending nothing.",
)
COMMAND_GROUP_SIZE = Histogram(
    "eventgraph_command_group_size",
    "Commands appended together by one group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)

GRAPHQL_OPERATIONS = Counter(
    "eventgraph_graphql_operations",
    "GraphQL operations, by type (query, mutation, subscription) and outcome (ok, or the"
    " first error's code).",
    ["type", "outcome"],
)
GRAPHQL_SECONDS = Histogram(
    "eventgraph_graphql_operation_duration_seconds",
    "Time to execute a query or mutation (subscriptions: to their start).",
    ["type"],
    buckets=LATENCY,
)

PROJECTION_CHECKPOINT = Gauge(
    "eventgraph_projection_checkpoint",
    "The last log position a projection has applied.",
    ["projection"],
    multiprocess_mode="max",
)
PROJECTION_HEAD = Gauge(
    "eventgraph_projection_head",
    "The log's head (the highest position readers can reach), beside each projection.",
    ["projection"],
    multiprocess_mode="max",
)
PROJECTION_LAG_EVENTS = Gauge(
    "eventgraph_projection_lag_events",
    "Events in the log that a projection has not applied yet.",
    ["projection"],
    multiprocess_mode="max",
)
PROJECTION_LAG_SECONDS = Gauge(
    "eventgraph_projection_lag_seconds",
    "Age of the oldest event a projection has not applied yet (0 when caught up).",
    ["projection"],
    multiprocess_mode="max",
)
PROJECTION_BATCH_SECONDS = Histogram(
    "eventgraph_projection_batch_duration_seconds",
    "Time to apply one batch of events and its checkpoint, in one transaction.",
    ["projection"],
    buckets=LATENCY,
)
PROJECTION_EVENTS = Counter(
    "eventgraph_projection_events_applied",
    "Events a projection has applied (or passed as not its own).",
    ["projection"],
)
PROJECTION_RECONNECTS = Counter(
    "eventgraph_projection_reconnects",
    "Times a projector lost its database connection and opened another.",
    ["projection"],
)
REACTION_CHECKPOINT = Gauge(
    "eventgraph_reaction_checkpoint",
    "The last log position a reaction has reacted to.",
    ["reaction"],
    multiprocess_mode="max",
)
REACTION_LAG_EVENTS = Gauge(
    "eventgraph_reaction_lag_events",
    "Events in the log that a reaction has not reacted to yet.",
    ["reaction"],
    multiprocess_mode="max",
)
REACTION_EVENTS = Counter(
    "eventgraph_reaction_events",
    "Events a reaction has followed (reacted to, or passed as not its own).",
    ["reaction"],
)
TIMERS_PENDING = Gauge(
    "eventgraph_timers_pending",
    "A reaction's timers not fired yet (due or not).",
    ["reaction"],
    multiprocess_mode="max",
)
TIMERS_OVERDUE = Gauge(
    "eventgraph_timers_oldest_overdue_seconds",
    "How long ago the oldest due timer of a reaction came due (0: none is due).",
    ["reaction"],
    multiprocess_mode="max",
)
TIMERS_FIRED = Counter(
    "eventgraph_timers_fired",
    "Timers fired and done with, by reaction and outcome: applied (its command appended),"
    " replayed (fired before, its first result found), refused (the domain said no: the"
    " order was paid meanwhile).",
    ["reaction", "outcome"],
)
TIMERS_FAILED = Counter(
    "eventgraph_timers_failed",
    "Timer firings that failed (the database away, a conflict): each is tried again later.",
    ["reaction"],
)
PARKED_EVENTS = Gauge(
    "eventgraph_projection_parked_events",
    "Events an operator parked for a projection.",
    ["projection"],
    multiprocess_mode="max",
)

WEBSOCKETS = Gauge(
    "eventgraph_websocket_connections",
    "Open GraphQL WebSocket connections.",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "eventgraph_subscriptions",
    "Active subscriptions, by root field.",
    ["field"],
    multiprocess_mode="livesum",
)
SHARED_EXECUTIONS = Gauge(
    "eventgraph_shared_executions",
    "Live view executions shared by identical subscribers.",
    multiprocess_mode="livesum",
)
LIVE_DELIVERIES = Counter(
    "eventgraph_live_deliveries", "Views sent to subscribers (one per subscriber per view)."
)
LIVE_SUPERSEDED = Counter(
    "eventgraph_live_superseded",
    "Views dropped unsent because a newer one of the same key replaced them (newest wins).",
)
LIVE_DELIVERY_SECONDS = Histogram(
    "eventgraph_live_delivery_seconds",
    "From the time of the event that changed a view to the view being handed to its"
    " subscribers (measured where the projector runs in the same process).",
    buckets=LATENCY,
)

FANOUT_CONNECTED = Gauge(
    "eventgraph_fanout_connected",
    "1 while the fan-out between processes is connected to its broker, else 0.",
    multiprocess_mode="min",
)
FANOUT_RECONNECTS = Counter(
    "eventgraph_fanout_reconnects", "Times the fan-out lost its broker and connected again."
)

RELAY_PUBLISHED = Counter(
    "eventgraph_relay_published",
    "Events the relay published and the broker confirmed (republished ones count again).",
)
RELAY_LAG_EVENTS = Gauge(
    "eventgraph_relay_lag_events",
    "Events in the log whose publication the broker has not confirmed yet, by relay.",
    ["relay"],
    multiprocess_mode="max",
)
RELAY_CHECKPOINT = Gauge(
    "eventgraph_relay_checkpoint",
    "The last log position whose publication the broker confirmed.",
    multiprocess_mode="max",
)

POOL_IN_USE = Gauge(
    "eventgraph_pool_connections_in_use",
    "Database pool connections lent out now (the log's and, if separate, the read side's).",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "eventgraph_pool_connections",
    "Database pool connections open now (both pools, as above).",
    multiprocess_mode="livesum",
)

UNKNOWN = "other"
"""A label value outside the closed set it should come from: counted, never spelled out."""


class EventTimes:
    """When the events up to each recently applied position happened, so that a view can be
    timed from its change to its delivery. Bounded: the last few thousand batches."""

    def __init__(self, capacity: int = 4096) -> None:
        self._positions: deque[int] = deque(maxlen=capacity)
        self._times: deque[float] = deque(maxlen=capacity)

    def applied(self, position: int, happened_at: float) -> None:
        """A batch up to `position` was applied; its last event happened at `happened_at`."""
        if not self._positions or position > self._positions[-1]:
            self._positions.append(position)
            self._times.append(happened_at)

    def delivered(self, changed: int) -> None:
        """A view changed at log position `changed` is being handed to its subscribers."""
        at = bisect.bisect_left(self._positions, changed)
        if at < len(self._positions):
            LIVE_DELIVERY_SECONDS.observe(max(time.time() - self._times[at], 0.0))


EVENT_TIMES = EventTimes()
