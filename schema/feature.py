"""What a feature adds to the GraphQL schema, declared by the feature's own module
(`FEATURE = Feature(...)` at its end) and listed once in `schema/features.py`: its parts of
the root types, and any fields it adds to another feature's type (GraphQL's `extend type`:
reviews add `rating` and `reviewCount` to Product, which the products feature knows nothing
of). `schema/__init__.py` builds the schema from the list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strawberry.tools import merge_types
from strawberry.types.base import get_object_definition


@dataclass(frozen=True)
class Feature:
    query: type | None = None
    """A strawberry type whose fields join `Query` (likewise `mutation`, `subscription`)."""
    mutation: type | None = None
    subscription: type | None = None
    extends: tuple[tuple[type, type], ...] = ()
    """(a type of another feature, a strawberry type of fields to add to it)."""


def extend(target: type, fields: type) -> None:
    """Add the fields of the strawberry type `fields` to the strawberry type `target`, after
    its own. Their resolvers get the target's object as their `root`."""
    into = get_object_definition(target, strict=True)
    known = {f.python_name for f in into.fields}
    for found in get_object_definition(fields, strict=True).fields:
        if found.python_name in known:
            raise ValueError(f"{target.__name__} already has a field {found.python_name!r}")
        into.fields.append(found)


def roots(features: Sequence[Feature]) -> tuple[type, type, type]:
    """The Query, Mutation and Subscription types of `features`, each feature's fields in the
    order of the list; and every declared extension applied (once)."""
    for feature in features:
        for target, fields in feature.extends:
            extend(target, fields)
    return (
        merge_types("Query", tuple(f.query for f in features if f.query)),
        merge_types("Mutation", tuple(f.mutation for f in features if f.mutation)),
        merge_types("Subscription", tuple(f.subscription for f in features if f.subscription)),
    )
