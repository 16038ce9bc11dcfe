"""One-time sign-in codes: what `eventgraph token --open` puts in its URL instead of a token.
A code is exchanged once at POST /auth/exchange for a token with the lifetime the command
was given; a second exchange (on this process or another on the same database), an expired
code or a forged one is refused; a code is never a token for the API; junk is a typed 4xx."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.auth import AuthError, mint_sign_in_code, mint_token, verify_token
from tests.e2e.conftest import Server, Users, start_server, stop_server
from tests.kit.server import SECRET

PRODUCTS = "{ products(first: 1) { edges { node { sku } } } }"


def new_sub() -> str:
    return f"code-{uuid.uuid4().hex[:8]}"


async def exchange(client: httpx.AsyncClient, url: str, code: Any) -> httpx.Response:
    return await client.post(url + "/auth/exchange", json={"code": code})


def refusal(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    return str(error["code"])


async def test_a_code_signs_in_once_with_the_lifetime_asked_for(
    server: Server, users: Users
) -> None:
    sub = new_sub()
    code = mint_sign_in_code(SECRET, sub, "staff", 600)
    first = await exchange(users.client, server.url, code)
    assert first.status_code == 200, first.text
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert (body["sub"], body["role"]) == (sub, "staff")
    principal = verify_token(SECRET, body["token"])
    assert (principal.sub, principal.role) == (sub, "staff")
    assert abs(principal.expires_at - (time.time() + 600)) < 30
    assert abs(body["expiresAt"] - principal.expires_at) < 5
    signed_in = await users.client.post(
        server.url + "/graphql",
        json={"query": "{ salesDashboard { ordersPlaced } }"},
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert "errors" not in signed_in.json(), signed_in.text  # staff: the role it asked for

    again = await exchange(users.client, server.url, code)
    assert refusal(again, 401) == "CODE_USED"


async def test_concurrent_exchanges_of_one_code_give_one_token(
    server: Server, users: Users
) -> None:
    code = mint_sign_in_code(SECRET, new_sub(), "customer", 60)
    answers = await asyncio.gather(*(exchange(users.client, server.url, code) for _ in range(12)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 11


async def test_a_code_used_on_one_process_is_refused_by_another(
    server: Server, users: Users, server_database_url: str, tmp_path: Path
) -> None:
    """Every process of a deployment shares the record of used codes (the database)."""
    other = start_server(server_database_url, tmp_path)
    try:
        code = mint_sign_in_code(SECRET, new_sub(), "customer", 60)
        assert (await exchange(users.client, server.url, code)).status_code == 200
        assert refusal(await exchange(users.client, other.url, code), 401) == "CODE_USED"
    finally:
        stop_server(other)


async def test_expired_forged_and_other_tokens_are_not_codes(server: Server, users: Users) -> None:
    sub = new_sub()
    expired = mint_sign_in_code(SECRET, sub, "staff", 600, lifetime_seconds=-5)
    response = await exchange(users.client, server.url, expired)
    assert refusal(response, 401) == "INVALID_CODE"
    assert "expired" in response.json()["error"]["message"]

    forged = mint_sign_in_code("another-secret-" + "y" * 32, sub, "staff", 600)
    assert refusal(await exchange(users.client, server.url, forged), 401) == "INVALID_CODE"
    api_token = mint_token(SECRET, sub, "staff")  # a token is not a code
    assert refusal(await exchange(users.client, server.url, api_token), 401) == "INVALID_CODE"


async def test_a_code_is_never_a_token_for_the_api(server: Server, users: Users) -> None:
    code = mint_sign_in_code(SECRET, new_sub(), "staff", 600)
    with pytest.raises(AuthError):
        verify_token(SECRET, code)
    response = await users.client.post(
        server.url + "/graphql",
        json={"query": PRODUCTS},
        headers={"Authorization": f"Bearer {code}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # and it still signs in once afterwards: a refused use spends nothing
    assert (await exchange(users.client, server.url, code)).status_code == 200


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"not json", "application/json", 400, "BAD_REQUEST"),
        (b"[]", "application/json", 400, "BAD_REQUEST"),
        (b"{}", "application/json", 400, "BAD_REQUEST"),
        (b'{"code": 12}', "application/json", 400, "BAD_REQUEST"),
        (b'{"code": ""}', "application/json", 400, "BAD_REQUEST"),
        (b'{"code": "a", "sub": "b"}', "application/json", 400, "BAD_REQUEST"),
        (b"[" * 5000, "application/json", 400, "BAD_REQUEST"),
        (b'{"code": "\xff"}', "application/json", 400, "BAD_REQUEST"),
        (b'{"code": "a.b.c"}', "application/json", 401, "INVALID_CODE"),
        (b'{"code": "' + b"a" * 5000 + b'"}', "application/json", 401, "INVALID_CODE"),
        (b'{"code": "' + b"a" * 9000 + b'"}', "application/json", 413, "PAYLOAD_TOO_LARGE"),
        (b'{"code": "a.b.c"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"code=a.b.c", "application/x-www-form-urlencoded", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
async def test_junk_is_a_typed_refusal_never_a_500(
    server: Server, users: Users, body: bytes, content_type: str, status: int, code: str
) -> None:
    response = await users.client.post(
        server.url + "/auth/exchange", content=body, headers={"Content-Type": content_type}
    )
    assert refusal(response, status) == code


async def test_only_post_is_served(server: Server, users: Users) -> None:
    response = await users.client.get(server.url + "/auth/exchange")
    assert response.status_code == 405


def token_open(server: Server, tmp_path: Path, sub: str) -> subprocess.CompletedProcess[str]:
    """`eventgraph token --sub <sub> --role staff --ttl 900 --open`, printing its URL."""
    env = {
        **{
            k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTGRAPH_"))
        },
        "EVENTGRAPH_JWT_SECRET": SECRET,
        "EVENTGRAPH_DATA_DIR": str(tmp_path),
    }
    for desktop in ("DISPLAY", "WAYLAND_DISPLAY"):  # print the URL, open no browser
        env.pop(desktop, None)
    args = ["token", "--sub", sub, "--role", "staff", "--ttl", "900", "--open"]
    return subprocess.run(
        [sys.executable, "-m", "eventgraph.cli", *args, "--url", server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_open_prints_a_one_time_code_and_no_token(server: Server, tmp_path: Path) -> None:
    sub = new_sub()
    result = token_open(server, tmp_path, sub)
    assert result.returncode == 0, result.stderr
    url, _, code = result.stdout.strip().partition("#code=")
    assert url == server.url + "/" and code
    assert "token=" not in result.stdout
    with pytest.raises(AuthError):
        verify_token(SECRET, code)  # what history and argv hold is not a token
    exchanged = httpx.post(server.url + "/auth/exchange", json={"code": code}, timeout=10)
    principal = verify_token(SECRET, exchanged.json()["token"])
    assert (principal.sub, principal.role) == (sub, "staff")
    assert abs(principal.expires_at - (time.time() + 900)) < 30
    again = httpx.post(server.url + "/auth/exchange", json={"code": code}, timeout=10)
    assert again.status_code == 401


def test_a_sub_not_in_nfc_gets_a_code_that_can_be_exchanged(server: Server, tmp_path: Path) -> None:
    """`token` writes the sub in NFC and the API takes only NFC, but the code kept the sub as
    typed: a decomposed "José" (as some keyboards and file systems give it) got a code
    that was refused at every exchange. The code now names the account in NFC."""
    suffix = uuid.uuid4().hex[:8]
    decomposed = unicodedata.normalize("NFD", f"José-{suffix}")
    composed = unicodedata.normalize("NFC", decomposed)
    assert decomposed != composed
    result = token_open(server, tmp_path, decomposed)
    assert result.returncode == 0, result.stderr
    code = result.stdout.strip().partition("#code=")[2]
    exchanged = httpx.post(server.url + "/auth/exchange", json={"code": code}, timeout=10)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["sub"] == composed
    assert verify_token(SECRET, exchanged.json()["token"]).sub == composed
    # the same account as a token minted for either spelling
    assert verify_token(SECRET, mint_token(SECRET, decomposed, "staff")).sub == composed


@pytest.mark.parametrize("sub", ["", "alice\u200b", "alice ", "\u202eecila", "x" * 1000, "a\nb"])
def test_a_code_for_a_sub_a_token_would_refuse_is_refused_too(sub: str) -> None:
    with pytest.raises(ValueError, match="sub must be"):
        mint_sign_in_code(SECRET, sub, "staff", 600)
