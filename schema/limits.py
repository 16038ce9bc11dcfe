"""Caps on what one GraphQL document may ask for."""

from __future__ import annotations

from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter

MAX_DEPTH = 10
MAX_ALIASES = 30
MAX_TOKENS = 2_000

# The limiters' validation rules, built once (each limiter instance makes new rule classes).
LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]
