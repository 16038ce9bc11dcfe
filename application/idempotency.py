"""Idempotency keys: a client's key, scoped to its caller, bound to the command and arguments
it was first used with."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import orjson

from domain.errors import DomainError, InvalidInput
from domain.values import Actor
from eventstore.events import (
    AppendResult,
)


class Conflict(DomainError):
    code = "CONFLICT"


CLIENT_KEY = re.compile(r"[\x21-\x7e]{1,200}")
"""An idempotency key as a client sends it: printable ASCII, no spaces."""
LEGACY_KEY = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's idempotency key, scoped to its caller, and what it must mean: the stored
    key is a digest of (caller, key), so any caller id works whatever its characters or
    length; the fingerprint is a digest of (command, canonical arguments)."""

    key: str
    fingerprint: str
    legacy_key: str | None = None
    """How the previous version stored this key (`command:len:caller:key`, no fingerprint),
    so that a command retried across an upgrade still finds its first result."""
    touches: frozenset[str] = frozenset()
    """Streams the command writes: a key of the previous version (which has no fingerprint)
    matches only a first result that wrote them too."""

    @classmethod
    def of(
        cls,
        actor: Actor,
        client_key: str | None,
        command: str,
        arguments: object,
        touches: frozenset[str] = frozenset(),
    ) -> Idempotency | None:
        if client_key is None:
            return None
        if not isinstance(client_key, str) or not CLIENT_KEY.fullmatch(client_key):
            raise InvalidInput("idempotencyKey must be 1 to 200 printable ASCII characters")
        signature = orjson.dumps([command, arguments], default=str)
        if actor.is_system:
            # The server's own commands (a reaction's timer): a scope no caller shares, and
            # no key from before keys had scopes.
            scope = orjson.dumps(["system", actor.id, client_key])
            return cls(
                "k2s:" + hashlib.sha256(scope).hexdigest(),
                hashlib.sha256(signature).hexdigest(),
                None,
                touches,
            )
        scope = orjson.dumps([actor.id, client_key])
        legacy = f"{command}:{len(actor.id)}:{actor.id}:{client_key}"
        return cls(
            "k2:" + hashlib.sha256(scope).hexdigest(),
            hashlib.sha256(signature).hexdigest(),
            legacy if LEGACY_KEY.fullmatch(legacy) else None,
            touches,
        )

    def check_legacy(self, result: AppendResult) -> None:
        if not self.touches <= set(result.stream_versions):
            raise Conflict(
                "this idempotencyKey was already used for a different command or different"
                " arguments; use a new key for a new command"
            )

    def check(self, result: AppendResult) -> None:
        if result.fingerprint is not None and result.fingerprint != self.fingerprint:
            raise Conflict(
                "this idempotencyKey was already used for a different command or different"
                " arguments; use a new key for a new command"
            )
