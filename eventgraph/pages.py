"""The pages a browser gets: the live dashboard at `/`, GraphiQL at `GET /graphql` when the
browser asks for HTML, and their assets under `/static/`, all from this package (built in
`web/`, see the README), so they work on a machine with no internet.

Every page goes out with a content security policy that lets it run only its own scripts and
talk only to its own origin: a token that the dashboard keeps cannot be sent elsewhere by an
injected script, and no other site may frame the pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

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
