"""The request id: taken from a client's `X-Request-Id` when it is a plain token, generated
otherwise, and carried in a context variable through everything the request does: its log
lines, and the metadata of the events it appends (as their correlation id), so that an
operator can go from a log line to the events and back."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

HEADER: Final = "x-request-id"
_TOKEN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}")

REQUEST_ID: ContextVar[str | None] = ContextVar("eventgraph_request_id", default=None)


def accepted(value: str | None) -> str:
    """The client's id if it is 1 to 128 characters of letters, digits and `._~:-` (nothing
    that could forge a log line or a header), else a new one."""
    if value is not None and _TOKEN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current() -> str | None:
    return REQUEST_ID.get()
