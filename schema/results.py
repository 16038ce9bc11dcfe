"""One way to turn an execution's result, or an exception, into what a client receives, for
HTTP, for each WebSocket protocol and for shared executions alike."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError

from schema.errors import format_error


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
