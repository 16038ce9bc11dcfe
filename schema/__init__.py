"""The GraphQL schema (strawberry): the contract's types, queries and mutations."""

from __future__ import annotations

import strawberry

from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_OVERRIDES
from schema.subscription import Subscription


def build_schema() -> strawberry.Schema:
    """Requests run through `schema.executor.Executor`, which caches parsing and validation
    (with the caps of `schema.limits`) per document."""
    return strawberry.Schema(
        query=Query, mutation=Mutation, subscription=Subscription, scalar_overrides=SCALAR_OVERRIDES
    )
