"""Request ids and correlation ids, carried in context variables through everything a
request does.

The request id is the client's `X-Request-Id` when it is a plain token (generated
otherwise): it names the request in the log lines and in the metadata of the events it
appends (`requestId`), so a client can find its own request. A client chooses it, so two
clients may send the same one. The correlation id is the server's: generated for every
request and every WebSocket operation, unique, and stored as the events' `correlationId`;
it goes from a log line to the events and back whatever clients send."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

HEADER: Final = "x-request-id"
_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}")

REQUEST_ID: ContextVar[str | None] = ContextVar("eventgraph_request_id", default=None)
_CORRELATION: ContextVar[tuple[str, str] | None] = ContextVar(
    "eventgraph_correlation", default=None
)
"""(the request id it was generated for, the correlation id)."""


def new_id() -> str:
    return uuid.uuid4().hex


def plain(value: str | None) -> str | None:
    """The client's id if it is 1 to 128 characters of letters, digits and `._~:-` (nothing
    that could forge a log line or a header), else None."""
    if value is not None and _TOKEN.fullmatch(value):
        return value
    return None


def accepted(value: str | None) -> str:
    """The client's id if it is plain, else a new one."""
    return plain(value) or new_id()


def begin(client_id: str | None) -> tuple[str, str]:
    """Start a request in this context: (its request id, its correlation id). Without a
    plain id from the client the two are the same new id."""
    correlation = new_id()
    request_id = plain(client_id) or correlation
    REQUEST_ID.set(request_id)
    _CORRELATION.set((request_id, correlation))
    return request_id, correlation


def current() -> str | None:
    return REQUEST_ID.get()


def correlation() -> str:
    """The correlation id of the request in context: the one `begin` made, or one made on
    the first use since the request id was set (a WebSocket operation sets only its request
    id, in a task of its own); outside any request a new one every time."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        return new_id()
    known = _CORRELATION.get()
    if known is not None and known[0] == request_id:
        return known[1]
    fresh = new_id()
    _CORRELATION.set((request_id, fresh))
    return fresh


def current_correlation() -> str | None:
    """The correlation id of the request in context, if one was made; never makes one."""
    known = _CORRELATION.get()
    if known is not None and known[0] == REQUEST_ID.get():
        return known[1]
    return None
