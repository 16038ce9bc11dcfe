"""GraphQL errors with the contract's `extensions.code`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from application.auth import AuthError
from domain.errors import DomainError
from eventstore.events import InvalidEventError
from eventstore.store import CONNECTION_ERRORS
from projections.live import FellBehind

log = logging.getLogger(__name__)

CONNECTION_LOST = CONNECTION_ERRORS
"""The database went away under a request: retryable, not a bug."""

UNSTORABLE = (asyncpg.DataError, UnicodeError)
"""A value the database cannot take (a NUL, a lone surrogate, a number out of range). Input
is validated before it gets this far; this is the net under that, so that such a value is
still the client's error, and the database's own message never reaches the client."""

ERROR_CODES = frozenset(
    {
        "BAD_USER_INPUT",
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "INSUFFICIENT_STOCK",
        "INVALID_STATE",
        "CONFLICT",
        "TIMEOUT",
        "UNAVAILABLE",
        "BAD_REQUEST",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
        "INTERNAL_SERVER_ERROR",
    }
)
"""Every code an error can carry: the contract's, and ours for a bug."""

_BAD_VALUE_HINTS = (
    "got invalid value",
    "has invalid value",
    "Expected value of type",
    "cannot represent",
    "of required type",
    "was not provided",
)


def error_code(error: GraphQLError) -> str:
    """The contract's code for an error: from the exception behind it, or, for errors raised
    by GraphQL itself before execution, from what kind of error it is."""
    cause: BaseException | None = error
    while isinstance(cause, GraphQLError):
        if cause.extensions and cause.extensions.get("code"):
            return str(cause.extensions["code"])
        cause = cause.original_error
    if cause is None:
        if isinstance(error, GraphQLSyntaxError):
            return "GRAPHQL_PARSE_FAILED"
        if any(hint in error.message for hint in _BAD_VALUE_HINTS):
            return "BAD_USER_INPUT"
        return "GRAPHQL_VALIDATION_FAILED"
    if isinstance(cause, DomainError):
        return cause.code
    if isinstance(cause, AuthError):
        return "UNAUTHENTICATED"
    if isinstance(cause, InvalidEventError):
        return "BAD_USER_INPUT"
    if isinstance(cause, CannotGetOperationTypeError | InvalidOperationTypeError):
        return "BAD_REQUEST"
    if isinstance(cause, TimeoutError):
        return "TIMEOUT"
    if isinstance(cause, (*CONNECTION_LOST, FellBehind)):
        return "UNAVAILABLE"
    if isinstance(cause, UNSTORABLE):
        return "BAD_USER_INPUT"
    return "INTERNAL_SERVER_ERROR"


def format_error(error: GraphQLError) -> dict[str, Any]:
    code = error_code(error)
    formatted: dict[str, Any] = dict(error.formatted)
    extensions: dict[str, Any] = {}
    if code == "UNAVAILABLE" and isinstance(error.original_error, FellBehind):
        log.warning("a subscriber fell behind in %s: %s", error.path, error.original_error)
        if error.original_error.position is not None:  # a feed resumes after it
            extensions["position"] = error.original_error.position
    elif code == "UNAVAILABLE":
        log.warning("database connection lost in %s: %r", error.path, error.original_error)
        formatted["message"] = (
            "The database connection was lost; retry (a command with the same idempotencyKey"
            " is applied at most once)."
        )
    if code == "BAD_USER_INPUT" and isinstance(error.original_error, UNSTORABLE):
        log.warning("unstorable value in %s: %r", error.path, error.original_error)
        formatted["message"] = "A value in the request contains characters that are not allowed."
    if code == "INTERNAL_SERVER_ERROR":
        log.error("unexpected error in %s", error.path, exc_info=error.original_error)
        formatted["message"] = "Internal server error."
    formatted["extensions"] = {**(formatted.get("extensions") or {}), **extensions, "code": code}
    return formatted
