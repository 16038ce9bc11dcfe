"""The GraphQL schema (strawberry): the contract's types, queries and mutations."""

from __future__ import annotations

import strawberry
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)

from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_OVERRIDES

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        scalar_overrides=SCALAR_OVERRIDES,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=256),
            lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: ValidationCache(maxsize=256),
        ],
    )
