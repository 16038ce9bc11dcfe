"""Executing GraphQL documents against the strawberry schema, with parsing and validation
done once per distinct document.

Strawberry's own `Schema.execute` builds an execution context and runs its extension hooks
on every request, which cost more than the rest of a small query. Here a document is parsed
(with a token cap), validated (with depth and alias caps) and checked for its operation once,
the result is kept in a bounded LRU keyed by the document text, and each request runs only
graphql-core's executor with strawberry's execution context class, so resolvers see exactly
what they would under `Schema.execute`."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLEnumType,
    GraphQLError,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    OperationDefinitionNode,
    OperationType,
    Undefined,
    execute,
    parse,
    specified_rules,
    subscribe,
    validate,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.execution.incremental import IncrementalExecutor
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.limits import LIMIT_RULES, MAX_TOKENS, check_cost


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    operations: dict[str | None, OperationType]
    """Each operation's type by name; None names the only one, if there is one."""

    def operation_type(self, name: str | None) -> OperationType | GraphQLError:
        found = self.operations.get(name)
        if found is not None:
            return found
        if name is None:
            return GraphQLError(
                "Must provide operation name if query contains multiple operations."
            )
        return GraphQLError(f"Unknown operation named '{name}'.")


class LeafObjects(IncrementalExecutor):
    """graphql-core's executor, with a shortcut for an object whose selected fields are all
    plain attributes holding scalars or enums (a product's `sku name unitPrice ...`).

    graphql-core completes every field through the same general path (a resolve info, a
    path, awaitable checks, a type dispatch) whatever it is; for the small views this API
    serves that was most of a query's cost beyond its SQL. Here such an object is read
    attribute by attribute and coerced as graphql-core would; anything else (a field with
    a resolver or arguments, a list, a nested object, a null where none may be, a value that
    does not coerce) sends the whole object back to the general path, which reads the same
    attributes again (they have no side effects) and reports exactly what it always did."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        if path is not None and source_value is not None:
            leaves = _leaves(parent_type, source_value, grouped_field_set)
            if leaves is not None:
                return leaves
        fields: AwaitableOrValue[dict[str, Any]] = super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )
        return fields


def _leaves(
    parent_type: GraphQLObjectType, source: Any, grouped_field_set: GroupedFieldSet
) -> dict[str, Any] | None:
    fields = parent_type.fields
    out: dict[str, Any] = {}
    for response_name, details in grouped_field_set.items():
        if len(details) != 1:
            return None
        name = details[0].node.name.value
        if name == "__typename":
            out[response_name] = parent_type.name
            continue
        field = fields.get(name)
        if field is None or field.args or not getattr(field.resolve, "_is_default", False):
            return None  # a resolver of our own, or arguments: the general path
        field_type = field.type
        non_null = isinstance(field_type, GraphQLNonNull)
        if non_null:
            field_type = field_type.of_type
        if not isinstance(field_type, GraphQLScalarType | GraphQLEnumType):
            return None
        value = field.resolve(source, None)  # strawberry's getattr
        if value is None:
            if non_null:
                return None
            out[response_name] = None
            continue
        try:
            coerced = field_type.coerce_output_value(value)
        except Exception:
            return None
        if coerced is Undefined or coerced is None:
            return None
        out[response_name] = coerced
    return out


class Executor:
    def __init__(self, schema: strawberry.Schema, cache_size: int = 512) -> None:
        self.graphql_schema = schema._schema
        self._rules = (*specified_rules, *LIMIT_RULES)
        self.prepare = lru_cache(maxsize=cache_size)(self._prepare)

    def _prepare(self, query: str) -> Prepared:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return Prepared(None, (error,), {})
        too_costly = check_cost(document)
        if too_costly is not None:
            return Prepared(None, (too_costly,), {})
        errors = validate(self.graphql_schema, document, self._rules)
        if errors:
            return Prepared(None, tuple(errors), {})
        operations: dict[str | None, OperationType] = {}
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                name = definition.name.value if definition.name else None
                operations[name] = definition.operation
        if len(operations) == 1:
            operations[None] = next(iter(operations.values()))
        return Prepared(document, (), operations)

    async def execute(
        self,
        document: DocumentNode,
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        result = execute(
            self.graphql_schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            executor_class=LeafObjects,
            is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
        )
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        return result

    async def subscribe(
        self,
        document: DocumentNode,
        context: Any,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> AsyncIterator[ExecutionResult] | ExecutionResult:
        result = subscribe(
            self.graphql_schema,
            document,
            context_value=context,
            variable_values=variables,
            operation_name=operation_name,
            executor_class=StrawberryGraphQLCoreExecutionContext,
        )
        if inspect.isawaitable(result):
            result = await result
        return result
