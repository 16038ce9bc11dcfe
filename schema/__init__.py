"""The GraphQL schema (strawberry): the contract's types, queries and mutations."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
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

# The depth and alias limiters make a new rule class per instance, and ValidationCache keys on
# the rule classes: built once here, their rules let every request hit the validation cache.
LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Expected failures are answers, not incidents: the HTTP layer logs the unexpected
        ones (see schema.errors.format_error)."""


def build_schema() -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        scalar_overrides=SCALAR_OVERRIDES,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=256),
            lambda: AddValidationRules(LIMIT_RULES),
            lambda: ValidationCache(maxsize=256),
        ],
    )
