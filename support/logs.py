"""Log lines as text (the default) or as one JSON object per line
(`EVENTGRAPH_LOG_FORMAT=json`), each with the request id of the request it belongs to.

What goes in a line is chosen where it is logged: methods, paths without their query
string, status codes, durations, field names, counts; never a token, a header, a query's
variables or anything else a client typed about a person."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from support.requests import current

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


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{n}={getattr(record, n)}" for n in FIELDS if getattr(record, n, None) is not None
        ]
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            extras.append(f"request_id={request_id}")
        return f"{text} [{' '.join(extras)}]" if extras else text


FORMATS: Final = ("text", "json")


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Send every logger's records, uvicorn's included, to one handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
