"""Read models that follow the event log: each is one module (its projection, typed view,
queries and live topics), registered here, in one place."""

from __future__ import annotations

from projections import orders, products, ratings, sales, wishlist
from projections.base import Projection
from projections.slice import ReadModel

READ_MODELS: tuple[ReadModel, ...] = (
    products.READ_MODEL,
    orders.READ_MODEL,
    sales.READ_MODEL,
    ratings.READ_MODEL,
    wishlist.READ_MODEL,
)
"""Every read model. A new one is a module like `products.py` and one entry here."""


def all_projections() -> list[Projection]:
    return [model.projection for model in READ_MODELS]


def by_name(name: str) -> Projection:
    for projection in all_projections():
        if projection.name == name:
            return projection
    names = ", ".join(p.name for p in all_projections())
    raise LookupError(f"no projection {name!r}; there are: {names}")
