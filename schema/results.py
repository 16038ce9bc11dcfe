"""One way to turn an execution's result, or an exception, into what a client receives, for
HTTP, for each WebSocket protocol and for shared executions alike."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, OperationType

from domain.errors import InvalidInput
from schema.errors import ERROR_CODES, error_code, format_error
from schema.scalars import MAX_POSITION, parse_position
from support import metrics


def payload(result: ExecutionResult, appended: int | None = None) -> dict[str, Any]:
    """`{"data": …, "errors": [...]}` with the contract's error codes, and
    `extensions.position` when the operation appended events (the last position)."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [format_error(e) for e in result.errors]
    if appended is not None:
        body["extensions"] = {"position": appended}
    return body


def session_position(extensions: Any, header: str | None = None) -> int | str:
    """The session's `atLeast`: the larger of `extensions.atLeast` and the
    `EventGraph-At-Least` header (0 when neither is given), or what is wrong with them."""
    found = 0
    if extensions is not None and not isinstance(extensions, dict):
        return "'extensions' must be a JSON object"
    given = [("extensions.atLeast", (extensions or {}).get("atLeast"))]
    if header is not None:
        given.append(("the EventGraph-At-Least header", header.strip()))
    for where, value in given:
        if value is None:
            continue
        try:
            found = max(found, parse_position(value))
        except InvalidInput:
            return f"{where} must be a Position: a whole number from 0 to {MAX_POSITION}"
    return found


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
