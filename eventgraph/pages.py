"""The pages a browser gets: the live dashboard at `/`, GraphiQL at `GET /graphql` when the
browser asks for HTML, and their assets under `/static/`, all from this package (built in
`web/`, see the README), so they work on a machine with no internet.

Every page goes out with a content security policy that lets it run only its own scripts and
talk only to its own origin: a token that the dashboard keeps cannot be sent elsewhere by an
injected script, and no other site may frame the pages.

`POST /auth/exchange` turns the one-time sign-in code of `eventgraph token --open` into a
token for the console (see `exchange_endpoint`)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from application.auth import AuthError, mint_token, verify_sign_in_code
from eventgraph.config import Settings
from eventstore.store import CONNECTION_ERRORS
from transport.http import graphql_http
from web import DIST

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; font-src 'self' data:; connect-src 'self';"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> Response:
    return FileResponse(DIST / name, media_type="text/html", headers=SECURITY_HEADERS)


async def dashboard(_request: Request) -> Response:
    return _page("index.html")


def wants_html(request: Request) -> bool:
    """A browser navigating to the URL (not a GraphQL client's GET with a query)."""
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept and "query" not in request.query_params


async def graphql_or_graphiql(request: Request) -> Response:
    if wants_html(request):
        return _page("graphiql.html")
    return await graphql_http(request)


class Assets(StaticFiles):
    """The built assets, with the pages' headers; only the files that are there (no
    directory listing, no path outside the folder: Starlette's StaticFiles checks)."""

    def __init__(self) -> None:
        super().__init__(directory=DIST)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, with_headers)


# ---- POST /auth/exchange: a sign-in code, once, for a token

MAX_EXCHANGE_BYTES = 8 * 1024
"""A code is under 1 KiB; nothing larger is read."""

RECORD_CODE = """
WITH expired AS (
    DELETE FROM eventgraph.sign_in_codes WHERE expires_at < now() - interval '1 hour'
)
INSERT INTO eventgraph.sign_in_codes (jti, expires_at) VALUES ($1, $2)
ON CONFLICT (jti) DO NOTHING
RETURNING jti
"""

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=NO_STORE)


async def _capped_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_EXCHANGE_BYTES):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_EXCHANGE_BYTES:
            return None
    return bytes(body)


def _code_of(body: bytes) -> str | None:
    try:
        parsed: Any = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or set(parsed) != {"code"}:
        return None
    code = parsed["code"]
    return code if isinstance(code, str) and code else None


def exchange_endpoint(
    jwt_secret: str, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    """`POST /auth/exchange` with `{"code": "..."}`: the token the code stands for, as
    `{"token", "sub", "role", "expiresAt"}`, once. The code's id is recorded in the event
    store's database before the token is made, insert-once, so a second exchange (from any
    process) is refused. Every refusal is JSON `{"error": {"code", "message"}}`: 415 for a
    body that is not JSON, 413 beyond 8 KiB, 400 for anything but `{"code": string}`, 401
    for a code that is forged, expired, not a sign-in code (`INVALID_CODE`) or used
    (`CODE_USED`), 503 while the database is unreachable. Nothing is written before the
    signature is checked, so junk costs one HMAC."""

    async def exchange(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            # also makes a cross-site request one that needs a preflight, never a plain form
            return _refusal(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
        try:
            body = await _capped_body(request)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody to answer
        if body is None:
            return _refusal(413, "PAYLOAD_TOO_LARGE", f"at most {MAX_EXCHANGE_BYTES} bytes")
        code = _code_of(body)
        if code is None:
            return _refusal(400, "BAD_REQUEST", 'expected {"code": "<the sign-in code>"}')
        try:
            claims = verify_sign_in_code(jwt_secret, code)
        except AuthError as exc:
            return _refusal(401, "INVALID_CODE", str(exc))
        runtime = request.app.state.host.runtime
        expires = datetime.datetime.fromtimestamp(claims.expires_at, datetime.UTC)
        try:
            async with asyncio.timeout(5), runtime.pool.acquire() as conn:
                recorded = await conn.fetchval(RECORD_CODE, claims.jti, expires)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError, TimeoutError) as exc:
            log.warning("a sign-in code could not be recorded: %s", type(exc).__name__)
            return _refusal(503, "UNAVAILABLE", "the database is not reachable: try again")
        if recorded is None:
            return _refusal(
                401, "CODE_USED", "this sign-in code was used already: run eventgraph token --open"
            )
        token = mint_token(
            jwt_secret,
            claims.sub,
            claims.role,
            claims.ttl_seconds,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
        return JSONResponse(
            {
                "token": token,
                "sub": claims.sub,
                "role": claims.role,
                "expiresAt": int(time.time()) + claims.ttl_seconds,
            },
            headers=NO_STORE,
        )

    return exchange
