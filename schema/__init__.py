"""The GraphQL schema (strawberry): the contract's types, queries and mutations, built from
the features listed in schema/features.py."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from schema.feature import roots
from schema.features import FEATURES
from schema.scalars import SCALARS

Query, Mutation, Subscription = roots(FEATURES)


def build_schema() -> strawberry.Schema:
    """Requests run through `schema.executor.Executor`, which caches parsing and validation
    (with the caps of `schema.limits`) per document."""
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
