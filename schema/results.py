"""One way to turn an execution's result, or an exception, into what a client receives, for
HTTP, for each WebSocket protocol and for shared executions alike."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, OperationType

from schema.errors import ERROR_CODES, error_code, format_error
from support import metrics


def payload(result: ExecutionResult) -> dict[str, Any]:
    """`{"data": …, "errors": [...]}` with the contract's error codes."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [format_error(e) for e in result.errors]
    return body


def serialised(result: ExecutionResult) -> bytes:
    return orjson.dumps(payload(result))


def as_graphql_error(exc: Exception) -> GraphQLError:
    """A resolver's exception as the GraphQL error that carries its code."""
    return exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)


def count(operation: OperationType, result: ExecutionResult | None, seconds: float) -> None:
    """An operation in /metrics: its outcome (ok, or its first error's code) and duration."""
    outcome = "ok"
    if result is not None and result.errors:
        code = error_code(result.errors[0])
        outcome = code if code in ERROR_CODES else metrics.UNKNOWN
    metrics.GRAPHQL_OPERATIONS.labels(operation.value, outcome).inc()
    metrics.GRAPHQL_SECONDS.labels(operation.value).observe(seconds)
