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


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("expected 'Authorization: Bearer <token>'")
    return token.strip()
