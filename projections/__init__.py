"""Read models that follow the event log."""

from __future__ import annotations

from projections.base import Projection
from projections.orders import OrdersProjection
from projections.products import ProductsProjection
from projections.sales import SalesProjection


def all_projections() -> list[Projection]:
    return [ProductsProjection(), OrdersProjection(), SalesProjection()]


def by_name(name: str) -> Projection:
    for projection in all_projections():
        if projection.name == name:
            return projection
    names = ", ".join(p.name for p in all_projections())
    raise LookupError(f"no projection {name!r}; there are: {names}")
