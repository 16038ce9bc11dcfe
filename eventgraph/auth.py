"""HS256 JWTs: claims sub, role ("customer" | "staff"), exp."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import jwt

Role = Literal["customer", "staff"]
ROLES: tuple[Role, ...] = ("customer", "staff")


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Role
    expires_at: float

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"


class AuthError(Exception):
    pass


def mint_token(secret: str, sub: str, role: Role, ttl_seconds: int = 24 * 3600) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not sub or len(sub) > 200:
        raise ValueError("sub must be 1 to 200 characters")
    now = int(time.time())
    return jwt.encode(
        {"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256"
    )


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or not sub or len(sub) > 200:
        raise AuthError("invalid token: bad sub")
    if role not in ROLES:
        raise AuthError("invalid token: role must be customer or staff")
    return Principal(sub=sub, role=role, expires_at=float(claims["exp"]))


class TokenVerifier:
    """Verifies tokens, remembering the last few thousand good ones: a client sends the same
    token with every request, and checking an HS256 signature costs more than the rest of a
    small request's authentication. A remembered token is still refused once it expires."""

    def __init__(self, secret: str, capacity: int = 4096) -> None:
        self._secret = secret
        self._capacity = capacity
        self._known: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        principal = self._known.get(token)
        if principal is None:
            principal = verify_token(self._secret, token)
            if len(self._known) >= self._capacity:
                self._known.pop(next(iter(self._known)))
            self._known[token] = principal
        if principal.expires_at <= time.time():
            self._known.pop(token, None)
            raise AuthError("invalid token: Signature has expired")
        return principal


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()
