"""The GraphQL schema (strawberry): the contract's types, queries and mutations."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types

from schema import mutation, query, reviews, subscription
from schema.scalars import SCALARS

Query = merge_types("Query", (query.Query, reviews.ReviewQuery))
Mutation = merge_types("Mutation", (mutation.Mutation, reviews.ReviewMutation))
Subscription = merge_types("Subscription", (subscription.Subscription, reviews.ReviewSubscription))


def build_schema() -> strawberry.Schema:
    """Requests run through `schema.executor.Executor`, which caches parsing and validation
    (with the caps of `schema.limits`) per document."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
