"""Domain errors. Each carries the contract's error code."""

from __future__ import annotations


class DomainError(Exception):
    code = "BAD_USER_INPUT"


class InvalidInput(DomainError):
    code = "BAD_USER_INPUT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class InsufficientStock(DomainError):
    code = "INSUFFICIENT_STOCK"


class InvalidState(DomainError):
    code = "INVALID_STATE"


class NotYet(InvalidState):
    """Refused for now, not for good: asked before its time (a deadline not yet passed).
    A reaction's timer refused so is tried again, not dropped."""


class Forbidden(DomainError):
    code = "FORBIDDEN"
