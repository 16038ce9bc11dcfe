"""HS256 JWTs: claims sub, role ("customer" | "staff"), exp; aud and iss when configured.

A token is refused unless `exp` is a whole number of seconds no further than
MAX_LIFETIME_SECONDS ahead (a token that never expires is a password that cannot be
changed), and `sub` is 1 to 200 characters with no control characters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import jwt

from domain.values import MAX_SUB, ROLES, Role, is_clean_text


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    role: Role
    expires_at: float

    @property
    def is_staff(self) -> bool:
        return self.role == "staff"


MAX_LIFETIME_SECONDS: Final = 30 * 24 * 3600
MIN_SECRET_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 4096


class AuthError(Exception):
    pass


def valid_sub(sub: object) -> bool:
    return isinstance(sub, str) and 1 <= len(sub) <= MAX_SUB and is_clean_text(sub)


def mint_token(
    secret: str,
    sub: str,
    role: Role,
    ttl_seconds: int = 24 * 3600,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if not valid_sub(sub):
        raise ValueError(f"sub must be 1 to {MAX_SUB} characters, no control characters")
    if ttl_seconds > MAX_LIFETIME_SECONDS:
        raise ValueError(f"the lifetime must be at most {MAX_LIFETIME_SECONDS} seconds")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "iat": now, "exp": now + ttl_seconds}
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(
    secret: str, token: str, *, audience: str | None = None, issuer: str | None = None
) -> Principal:
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("invalid token: too long")
    required = ["exp", "sub", *(["aud"] if audience else []), *(["iss"] if issuer else [])]
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=audience,
            issuer=issuer,
            options={"require": required, "verify_aud": bool(audience)},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    except (ValueError, TypeError, OverflowError):
        raise AuthError("invalid token: malformed claims") from None
    sub, role, exp = claims.get("sub"), claims.get("role"), claims.get("exp")
    if not isinstance(sub, str) or not valid_sub(sub):
        raise AuthError("invalid token: bad sub")
    if role not in ROLES:
        raise AuthError("invalid token: role must be customer or staff")
    if isinstance(exp, bool) or not isinstance(exp, int):
        raise AuthError("invalid token: exp must be a whole number of seconds")
    if exp > time.time() + MAX_LIFETIME_SECONDS:
        raise AuthError(
            f"invalid token: it expires more than {MAX_LIFETIME_SECONDS // 86400} days ahead"
        )
    return Principal(sub=sub, role=role, expires_at=float(exp))


class TokenVerifier:
    """Verifies tokens, remembering the last few thousand good ones: a client sends the same
    token with every request, and checking an HS256 signature costs more than the rest of a
    small request's authentication. A remembered token is still refused once it expires."""

    def __init__(
        self,
        secret: str,
        capacity: int = 4096,
        *,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._secret = secret
        self._capacity = capacity
        self._audience = audience
        self._issuer = issuer
        self._known: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        principal = self._known.get(token)
        if principal is None:
            principal = verify_token(
                self._secret, token, audience=self._audience, issuer=self._issuer
            )
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
