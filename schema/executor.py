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
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    specified_rules,
    subscribe,
    validate,
)
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
