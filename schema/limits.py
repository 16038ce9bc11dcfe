"""Caps on what one GraphQL document may ask for, so that no request, signed in or not, costs
the server more than a bounded amount of work.

Parsing is capped by tokens. Validation is not linear: the rule that checks overlapping
fields compares every pair of same-named fields in a selection set, so a 5 KB document that
repeats `node { sku name }` 300 times costs half a second of CPU before anyone has looked at
the token. `check_cost` runs first, in time proportional to its budget: it counts the fields
a document selects with every fragment expanded, and how often one response name repeats in
one selection set, and refuses a document over either cap before it is validated. Every
selection (a field, a spread, an inline fragment) is charged to one budget, so the check
itself cannot be made to take long."""

from __future__ import annotations

from collections import Counter
from typing import Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter

MAX_DEPTH: Final = 10
MAX_ALIASES: Final = 30
MAX_TOKENS: Final = 2_000
MAX_FIELDS: Final = 1_000
"""Fields a document selects, each fragment counted at every place it is spread."""
MAX_REPEATS: Final = 8
"""Times one response name may appear in one selection set (fragments merged in)."""

# The limiters' validation rules, built once (each limiter instance makes new rule classes).
LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class _TooCostly(Exception):
    pass


def check_cost(document: DocumentNode) -> GraphQLError | None:
    """An error if `document` selects more than MAX_FIELDS fields or repeats a response name
    more than MAX_REPEATS times in one selection set; None if it is within bounds."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    budget = [MAX_FIELDS]

    def charge() -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooCostly(f"the document selects more than {MAX_FIELDS} fields")

    def fields_of(selection_set: SelectionSetNode, spreading: frozenset[str]) -> list[FieldNode]:
        """The fields of a selection set with its fragments merged in. Every selection costs
        one unit of the budget, a spread or an inline fragment too, so that fragments that
        spread each other eight times over (or lead nowhere) cannot multiply the work."""
        found: list[FieldNode] = []
        for selection in selection_set.selections:
            charge()
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found.extend(fields_of(selection.selection_set, spreading))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in spreading:  # cycles: validation's
                    found.extend(fields_of(fragment.selection_set, spreading | {name}))
        return found

    def visit(selection_sets: list[SelectionSetNode]) -> None:
        """Same-named fields merge, as the overlap check sees them: the selections of every
        `products` in a set are compared as one set."""
        fields = [f for s in selection_sets for f in fields_of(s, frozenset())]
        names = Counter((f.alias or f.name).value for f in fields)
        name, count = names.most_common(1)[0] if names else ("", 0)
        if count > MAX_REPEATS:
            raise _TooCostly(f"{name!r} is selected {count} times in one selection set")
        merged: dict[str, list[SelectionSetNode]] = {}
        for field in fields:
            if field.selection_set is not None:
                merged.setdefault((field.alias or field.name).value, []).append(field.selection_set)
        for children in merged.values():
            visit(children)

    try:
        # Fragments are checked where they are spread and also on their own: validation
        # checks an unused fragment's overlaps too (before it refuses it as unused).
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
                visit([definition.selection_set])
    except _TooCostly as exc:
        return GraphQLError(f"Query too costly: {exc}.")
    except RecursionError:
        return GraphQLError("Query too costly: nested too deeply.")
    return None


MAX_VARIABLES_DEPTH: Final = 20
"""How deeply a request's variables may nest lists and objects (an order's lines need 3)."""


def too_deep(value: object, limit: int = MAX_VARIABLES_DEPTH) -> bool:
    """True if `value` (parsed JSON) nests lists or objects more than `limit` deep; iterative,
    so a value nested ten thousand deep cannot exhaust the stack here."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False
