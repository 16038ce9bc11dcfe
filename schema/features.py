"""Every feature of the API, in one place. A new feature is a module ending in
`FEATURE = Feature(...)` (schema/feature.py) and one entry here; its queries, mutations and
subscriptions then join the root types, in this order."""

from __future__ import annotations

from schema import customers, log, orders, products, reviews, sales, wishlist
from schema.feature import Feature

FEATURES: tuple[Feature, ...] = (
    products.FEATURE,
    orders.FEATURE,
    sales.FEATURE,
    log.FEATURE,
    reviews.FEATURE,
    wishlist.FEATURE,
    customers.FEATURE,
)
