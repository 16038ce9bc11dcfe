"""The contract's error code for what can go wrong under a request."""

from __future__ import annotations

import asyncpg
import pytest
from graphql import GraphQLError

from projections.live import FellBehind
from schema.errors import error_code, format_error


@pytest.mark.parametrize(
    ("cause", "code"),
    [
        (OSError("connection reset"), "UNAVAILABLE"),
        (asyncpg.InterfaceError("connection is closed"), "UNAVAILABLE"),
        (FellBehind("more than 10000 views were waiting"), "UNAVAILABLE"),
        (TimeoutError("the products read model had not reached 9"), "TIMEOUT"),
        (RuntimeError("a bug"), "INTERNAL_SERVER_ERROR"),
    ],
)
def test_each_failure_has_its_code(cause: Exception, code: str) -> None:
    error = GraphQLError(str(cause), original_error=cause)
    assert error_code(error) == code
    assert format_error(error)["extensions"]["code"] == code


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_domain_error_has_a_code_that_metrics_count_by_name() -> None:
    import application.idempotency  # noqa: F401  (defines Conflict)
    from domain.errors import DomainError
    from schema.errors import ERROR_CODES

    codes = {cls.code for cls in _subclasses(DomainError)}
    assert codes <= ERROR_CODES
    assert {"CONFLICT", "INSUFFICIENT_STOCK", "NOT_FOUND"} <= codes


def test_a_feed_that_fell_behind_says_where_to_resume() -> None:
    cause = FellBehind("more than 10000 views were waiting", position=4242)
    formatted = format_error(GraphQLError(str(cause), original_error=cause))
    assert formatted["extensions"] == {"code": "UNAVAILABLE", "position": 4242}
    assert "database" not in formatted["message"]
