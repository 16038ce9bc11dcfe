"""What every feature's resolvers share: optional arguments, page sizes and pages, checked
ids, and a mutation payload's read of its own write."""

from __future__ import annotations

import logging
from typing import TypeVar

import strawberry

from domain import values
from domain.errors import InvalidInput
from schema.context import Info

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_PAGE = 100


def given(value: T | None) -> T | None:
    """None for an argument the client left out."""
    return None if value is strawberry.UNSET else value


def page_size(first: int, maximum: int) -> int:
    if not 0 <= first <= maximum:
        raise InvalidInput(f"first must be between 0 and {maximum}")
    return first


def valid_customer_id(value: str) -> str:
    if not values.is_clean_text(value) or not 1 <= len(value) <= values.MAX_SUB:
        raise InvalidInput(f"customerId must be 1 to {values.MAX_SUB} printable characters")
    return value


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def page_info(cursors: list[str], has_next: bool) -> PageInfo:
    return PageInfo(has_next_page=has_next, end_cursor=cursors[-1] if cursors else None)


async def read_after(info: Info, projection: str, position: int) -> bool:
    """Wait for the read model to reach `position`; False if it could not in time, in which
    case the payload falls back to the command's own result, which is the same view."""
    try:
        await info.context.at_least(projection, position)
        return True
    except TimeoutError as exc:
        log.warning("mutation payload from the command's result: %s", exc)
        return False
