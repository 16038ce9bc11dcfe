"""Log lines as text (the default) or as one JSON object per line
(`EVENTGRAPH_LOG_FORMAT=json`), each with the request id and the correlation id of the
request it belongs to.

What goes in a line is chosen where it is logged: methods, paths without their query
string, status codes, durations, field names, counts; never a token, a header, a query's
variables or anything else a client typed about a person.

What a client sent cannot forge a line: text lines escape every control character (C0, DEL,
C1, the Unicode line and paragraph separators and the bidirectional overrides) as `\\xNN` or
`\\uNNNN` in the message and in every field, and indent the lines of a traceback; JSON lines
are escaped by the encoder, and the characters some readers take for line ends (C1, U+2028,
U+2029) too. Paths are cut to `MAX_PATH` characters where they are logged (`clip`). uvicorn's
WebSocket and access lines lose their query string."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from support.requests import current, current_correlation

FIELDS: Final = (
    "method",
    "path",
    "status",
    "duration_ms",
    "operation",
    "fields",
    "code",
    "subscriptions",
    "client",
)
"""The extra attributes a log call may carry (`log.info(..., extra={...})`)."""

MAX_PATH: Final = 200

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_JSON_UNSAFE: Final = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """`text` with every control character written as an escape, never raw."""
    return _CONTROL.sub(_escaped, text)


def clip(path: str, limit: int = MAX_PATH) -> str:
    """A path as logged: at most `limit` characters, then how long it was."""
    if len(path) <= limit:
        return path
    return f"{path[:limit]}...[{len(path)} chars]"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request and correlation ids of the context it was
    logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current()
        if not hasattr(record, "correlation_id"):
            record.correlation_id = current_correlation()
        return True


_UVICORN_PATH_ARG: Final = {
    # uvicorn's WebSocket handshake lines: (client, path with query string[, status])
    '%s - "WebSocket %s" [accepted]': 1,
    '%s - "WebSocket %s" 403': 1,
    '%s - "WebSocket %s" %d': 1,
    # its access lines, should they be turned on: (client, method, path, version, status)
    '%s - "%s %s HTTP/%s" %d': 2,
}


class QueryStringFilter(logging.Filter):
    """Takes the query string off the path uvicorn puts in its WebSocket and access lines
    (`/graphql?token=…`: a query string may carry anything), and clips the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        index = _UVICORN_PATH_ARG.get(record.msg) if isinstance(record.msg, str) else None
        if index is not None and isinstance(record.args, tuple) and len(record.args) > index:
            args = list(record.args)
            args[index] = clip(str(args[index]).split("?", 1)[0])
            record.args = tuple(args)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "correlation_id"):
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _JSON_UNSAFE.sub(_json_escaped, orjson.dumps(line, default=str).decode())


def _json_escaped(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"  # only ever inside a JSON string


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        message = escape(record.getMessage())
        text = (
            f"{self.formatTime(record, self.datefmt)} {record.levelname}"
            f" {escape(record.name)}: {message}"
        )
        extras = []
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is None:
                continue
            shown = escape(str(value))
            if name == "path" and shown in message:
                continue  # already in the message: a path is written once
            extras.append(f"{name}={shown}")
        for name in ("request_id", "correlation_id"):
            value = getattr(record, name, None)
            if value is not None:
                extras.append(f"{name}={escape(str(value))}")
        if extras:
            text = f"{text} [{' '.join(extras)}]"
        details = []
        if record.exc_info:
            details.append(self.formatException(record.exc_info))
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        for detail in details:
            # Indented, each line escaped: nothing in an exception's text starts a line.
            text += "".join(f"\n    {escape(line)}" for line in detail.split("\n"))
        return text


FORMATS: Final = ("text", "json")


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Send every logger's records, uvicorn's included, to one handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(QueryStringFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
