"""Opaque, signed pagination cursors: a client can pass back only a cursor we gave it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from domain.errors import InvalidInput


class Cursors:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"eventgraph-cursor:" + secret.encode()).digest()

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:12]

    def encode(self, kind: str, values: list[Any]) -> str:
        body = json.dumps([kind, *values], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._sign(body) + body).decode().rstrip("=")

    def decode(self, kind: str, cursor: str) -> list[Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            signature, body = raw[:12], raw[12:]
            if len(cursor) > 1000 or not hmac.compare_digest(signature, self._sign(body)):
                raise ValueError
            decoded = json.loads(body)
            if not isinstance(decoded, list) or not decoded or decoded[0] != kind:
                raise ValueError
        except ValueError:
            raise InvalidInput("invalid cursor: pass back an endCursor from this API") from None
        return decoded[1:]
