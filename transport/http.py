"""GraphQL over HTTP: POST (queries and mutations) and GET (queries) on /graphql.

Our own small endpoint rather than strawberry's view, so that the request body is capped
before it is read, every expected failure is a GraphQL error with the contract's code and
HTTP 200, and nothing a client sends can produce a 500."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from graphql import GraphQLError, OperationType
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from application.auth import AuthError, Principal, TokenVerifier, bearer
from schema.context import Context
from schema.errors import format_error
from schema.limits import MAX_VARIABLES_DEPTH, too_deep
from schema.results import count, payload, session_position
from transport.state import transport_state, within_limits

MAX_BODY_BYTES = 256 * 1024
AT_LEAST_HEADER = "EventGraph-At-Least"
"""Session consistency over HTTP: the same as `extensions.atLeast`."""

DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
CLIENT_CLOSED_REQUEST = 499
"""The status logged for a request whose client left before sending all of it (nginx's
number; nothing is sent, there is no one to send it to)."""

log = logging.getLogger(__name__)


class _BodyTooLarge(Exception):
    pass


def set_body_timeout(app: Starlette, seconds: float) -> None:
    """How long a request body may take to arrive, in all (0: no limit)."""
    app.state.body_timeout_seconds = seconds


def _body_timeout(request: Request) -> float:
    return float(getattr(request.app.state, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_SECONDS))


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, code: str = "BAD_REQUEST") -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status)


def authenticate(
    verifier: TokenVerifier, header: str | None
) -> tuple[Principal | None, str | None]:
    try:
        token = bearer(header)
        return (verifier.verify(token), None) if token else (None, None)
    except AuthError as exc:
        return None, str(exc)


async def _read_body(request: Request) -> bytes:
    """The body, whole, within the body timeout (TimeoutError otherwise): a client that
    promises a body and trickles it must not hold a connection and its file for ever."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _BodyTooLarge
    body = bytearray()
    async with asyncio.timeout(_body_timeout(request) or None):
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                raise _BodyTooLarge
    return bytes(body)


def _json_param(value: Any, name: str) -> Any:
    """GET sends `variables` and `extensions` as JSON text."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return ValueError(f"'{name}' is not valid JSON (or nests too deeply)")


def _params(
    raw: Any, header: str | None
) -> tuple[str, dict[str, Any] | None, str | None, int] | str:
    if not isinstance(raw, dict):
        return "the body must be a JSON object"
    query, operation = raw.get("query"), raw.get("operationName")
    variables = _json_param(raw.get("variables"), "variables")
    extensions = _json_param(raw.get("extensions"), "extensions")
    if not isinstance(query, str) or not query.strip():
        return "'query' must be a non-empty string"
    for parsed in (variables, extensions):
        if isinstance(parsed, ValueError):
            return str(parsed)
    if variables is not None and not isinstance(variables, dict):
        return "'variables' must be a JSON object"
    if too_deep(variables):
        return f"'variables' nest more than {MAX_VARIABLES_DEPTH} levels deep"
    if operation is not None and not isinstance(operation, str):
        return "'operationName' must be a string"
    at_least = session_position(extensions, header)
    if isinstance(at_least, str):
        return at_least
    return query, variables, operation, at_least


async def graphql_http(request: Request) -> Response:
    if request.method == "POST":
        try:
            body = await _read_body(request)
        except _BodyTooLarge:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        except TimeoutError:
            log.info("request body not complete within %g s: answered 408", _body_timeout(request))
            response = _error(408, "the request body did not arrive in time")
            response.headers["connection"] = "close"  # what is left of it is not read
            return response
        except ClientDisconnect:
            log.info("the client disconnected before sending its whole request body")
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "the body is not valid JSON")
        allowed = {OperationType.QUERY, OperationType.MUTATION}
    elif request.method == "GET":
        raw = dict(request.query_params)
        allowed = {OperationType.QUERY}
    else:
        return _error(405, "use GET or POST")
    params = _params(raw, request.headers.get(AT_LEAST_HEADER))
    if isinstance(params, str):
        return _error(400, params)
    query, variables, operation_name, at_least = params

    state = transport_state(request.app).ready
    executor = state.executor
    prepared = executor.prepare(query)
    if prepared.document is None:
        return ORJSONResponse({"data": None, "errors": [format_error(e) for e in prepared.errors]})
    operation = prepared.operation_type(operation_name)
    if isinstance(operation, GraphQLError):
        return _error(200, operation.message)
    if operation not in allowed:
        kind = {OperationType.MUTATION: "mutations", OperationType.SUBSCRIPTION: "subscriptions"}
        where = "over GET" if request.method == "GET" else "over HTTP: use the WebSocket"
        return _error(
            405 if request.method == "GET" else 200,
            f"{kind.get(operation, operation.value)} are not allowed {where}",
        )

    principal, auth_error = authenticate(state.tokens, request.headers.get("authorization"))
    context = Context(
        services=state.services,
        principal=principal,
        auth_error=auth_error,
        session_at_least=at_least,
    )
    started = time.perf_counter()
    execution = executor.execute(prepared.document, context, variables, operation_name)
    result = await within_limits(request.app, principal, execution)  # the user's fair share
    count(operation, result, time.perf_counter() - started)
    return ORJSONResponse(payload(result, context.appended))
