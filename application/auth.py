"""HS256 JWTs: claims sub, role ("customer" | "staff"), exp; aud and iss when configured.

A token is refused unless `exp` is a whole number of seconds no further than
MAX_LIFETIME_SECONDS ahead (a token that never expires is a password that cannot be
changed), and `sub` is 1 to 200 characters with nothing a page does not show (see
`valid_sub`); a token naming an audience is refused unless one is configured."""

from __future__ import annotations

import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

import jwt

from domain.values import MAX_SUB, ROLES, SYSTEM_PREFIX, Role, is_clean_text


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
    """1 to MAX_SUB characters in NFC, none of them control, invisible or bidirectional
    formatting, no space but single inner ones: two subjects that look alike on a page
    (`alice` and `alice\u200b`, `alice `, an RLO-reversed name) would be two users that
    nobody can tell apart. Nor `system:…`: the server's own actors (its reactions) are
    named so, and no user may act, or look in the log, as one of them."""
    return (
        isinstance(sub, str)
        and 1 <= len(sub) <= MAX_SUB
        and is_clean_text(sub)
        and unicodedata.is_normalized("NFC", sub)
        and sub == sub.strip()
        and "  " not in sub
        and not any(_invisible(c) for c in sub)
        and not sub.startswith(SYSTEM_PREFIX)
    )


_BLANKS: Final = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
"""Characters of visible categories that render as nothing: the combining grapheme joiner,
Hangul and Khmer fillers, the blank Braille pattern."""


def _invisible(c: str) -> bool:
    category = unicodedata.category(c)
    code = ord(c)
    return (
        category in ("Cf", "Zl", "Zp", "Co", "Cn")  # zero-width, bidi controls, unassigned
        or (category == "Zs" and c != " ")  # no-break and other look-alike spaces
        or c in _BLANKS
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0xE0100 <= code <= 0xE01EF
        or 0x180B <= code <= 0x180F
    )


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
    sub = unicodedata.normalize("NFC", sub) if isinstance(sub, str) else sub
    if not valid_sub(sub):
        raise ValueError(
            f"sub must be 1 to {MAX_SUB} characters: no control, invisible or bidirectional"
            f" characters, no leading, trailing or repeated spaces, not starting {SYSTEM_PREFIX!r}"
        )
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
    if audience is None and "aud" in claims:  # meant for another service: not ours to accept
        raise AuthError("invalid token: it names an audience (aud) and none is configured")
    if not isinstance(sub, str) or not valid_sub(sub):
        # Not normalised here: two spellings that an issuer told apart are not merged into
        # one user; a sub not in NFC is refused like any other look-alike.
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


# ---- sign-in codes: what `eventgraph token --open` puts in a URL instead of a token

SIGN_IN_CODE_AUDIENCE: Final = "eventgraph:sign-in-code"
SIGN_IN_CODE_TYPE: Final = "sign-in-code"
SIGN_IN_CODE_SECONDS: Final = 120


@dataclass(frozen=True, slots=True)
class SignInCode:
    """A verified sign-in code: exchanged once (its `jti` recorded) for a token for `sub` and
    `role` that lives `ttl_seconds` from the exchange."""

    jti: str
    sub: str
    role: Role
    ttl_seconds: int
    expires_at: int


def mint_sign_in_code(
    secret: str,
    sub: str,
    role: Role,
    ttl_seconds: int,
    *,
    lifetime_seconds: int = SIGN_IN_CODE_SECONDS,
) -> str:
    """A short-lived, one-time code for a browser to exchange for a token. It names the
    account only inside `for`, with no `sub` or `role` of its own and its own audience, so
    the API never takes it as a token; a URL, a browser's history or its command line that
    hold it hold nothing reusable once it was exchanged or two minutes passed."""
    # The same checks as the token it stands for, before anything is signed, and the same
    # spelling: the exchange takes only NFC, so a sub typed otherwise must not reach the code.
    sub = unicodedata.normalize("NFC", sub) if isinstance(sub, str) else sub
    mint_token(secret, sub, role, ttl_seconds)
    if ttl_seconds < 1:
        raise ValueError("the lifetime must be at least 1 second")
    now = int(time.time())
    claims: dict[str, Any] = {
        "typ": SIGN_IN_CODE_TYPE,
        "aud": SIGN_IN_CODE_AUDIENCE,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + lifetime_seconds,
        "for": {"sub": sub, "role": role, "ttl": ttl_seconds},
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_sign_in_code(secret: str, code: str) -> SignInCode:
    """The code's claims, or AuthError: forged, expired, or not a sign-in code (a token is
    not one: no `typ`, another audience). Whether it was used already is the caller's to
    check, by recording its `jti`."""
    if not isinstance(code, str) or not code or len(code) > MAX_TOKEN_CHARS:
        raise AuthError("invalid sign-in code: empty or too long")
    try:
        claims = jwt.decode(
            code,
            secret,
            algorithms=["HS256"],
            audience=SIGN_IN_CODE_AUDIENCE,
            options={"require": ["exp", "jti", "aud", "typ", "for"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("the sign-in code has expired: run eventgraph token --open again") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid sign-in code: {exc}") from None
    except (ValueError, TypeError, OverflowError):
        raise AuthError("invalid sign-in code: malformed claims") from None
    exp, jti, account = claims.get("exp"), claims.get("jti"), claims.get("for")
    if claims.get("typ") != SIGN_IN_CODE_TYPE or not isinstance(account, dict):
        raise AuthError("invalid sign-in code: not a sign-in code")
    if isinstance(exp, bool) or not isinstance(exp, int) or exp > time.time() + 3600:
        raise AuthError("invalid sign-in code: bad exp")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 64:
        raise AuthError("invalid sign-in code: bad jti")
    sub, role, ttl = account.get("sub"), account.get("role"), account.get("ttl")
    if not valid_sub(sub) or role not in ROLES:
        raise AuthError("invalid sign-in code: bad account")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_LIFETIME_SECONDS:
        raise AuthError("invalid sign-in code: bad lifetime")
    assert isinstance(sub, str)
    return SignInCode(jti=jti, sub=sub, role=role, ttl_seconds=ttl, expires_at=exp)
