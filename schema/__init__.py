"""The GraphQL schema (strawberry): the contract's types, queries and mutations."""

from __future__ import annotations

import strawberry

from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_OVERRIDES


def build_schema() -> strawberry.Schema:
    """Requests run through `schema.executor.Executor`, which caches parsing and validation
    (with the caps of `schema.limits`) per document."""
    return strawberry.Schema(query=Query, mutation=Mutation, scalar_overrides=SCALAR_OVERRIDES)
