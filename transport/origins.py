"""Which browser origins may call the API: `EVENTGRAPH_CORS_ORIGINS` (comma-separated), the
server's own origin always, and, while the development secret is in use, any port of
`http://localhost` and `http://127.0.0.1` (a Vite or webpack dev server).

HTTP gets Starlette's CORS middleware (preflight, no credentials: the token travels in the
Authorization header). A WebSocket handshake is checked here too, since browsers send any
page's Origin with it and CORS does not apply to WebSockets: a browser on an origin not
allowed is refused before the handshake completes (cross-site WebSocket hijacking). A
client that sends no Origin (not a browser) is accepted; it has to sign in anyway."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

DEV_ORIGINS = r"http://(localhost|127\.0\.0\.1)(:[0-9]{1,5})?"


@dataclass(frozen=True)
class Origins:
    allowed: tuple[str, ...]
    development: bool

    @classmethod
    def parse(cls, configured: str | None, development: bool) -> Origins:
        allowed = tuple(o.strip().rstrip("/") for o in (configured or "").split(",") if o.strip())
        return cls(allowed, development)

    def allows(self, origin: str, host: str | None) -> bool:
        if origin in self.allowed or "*" in self.allowed:
            return True
        if self.development and re.fullmatch(DEV_ORIGINS, origin):
            return True
        # The server's own pages (GraphiQL, the dashboard) are same-origin.
        netloc = origin.split("://", 1)[-1]
        return host is not None and netloc == host

    def middleware(self) -> Sequence[Middleware]:
        return [
            Middleware(
                CORSMiddleware,
                allow_origins=list(self.allowed),
                allow_origin_regex=DEV_ORIGINS if self.development else None,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "X-Request-Id",
                    "EventGraph-At-Least",
                ],
                expose_headers=["X-Request-Id"],
                allow_credentials=False,
                max_age=600,
            )
        ]
