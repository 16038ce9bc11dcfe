"""The pure guards at the edges: id parsing, the integrity check before an append, the cost
of a document, the nesting of variables, money and positions, tokens."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import jwt
import pytest
from graphql import parse

from application.auth import AuthError, mint_token, verify_token
from domain import integrity, order, product
from domain.errors import InvalidInput
from domain.ids import OrderId, canonical_legacy_order_id, order_id
from domain.upcasters import upcast_canonical_order_id_v1_v2
from domain.values import money
from schema.limits import MAX_FIELDS, check_cost, too_deep
from schema.scalars import _parse_decimal, parse_position

U = "3f2b6c1e-9d4a-4c1b-8f3e-2a7d5e9c0b14"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = "s" * 40


@pytest.mark.parametrize(
    "spelling",
    [U, U.upper(), "{" + U + "}", U.replace("-", ""), "urn:uuid:" + U, "URN:UUID:" + U.upper()],
)
def test_every_spelling_of_an_order_id_is_one_canonical_id(spelling: str) -> None:
    assert order_id(spelling) == U


@pytest.mark.parametrize(
    "bad",
    ["", "x", U[:-1], U + "0", " " + U, U + "\n", "{" + U, U.replace("3", "\u0663"),
     U.replace("-", "_"), "1234_678" + U[8:], "{{" + U + "}}", None, 42],
)  # fmt: skip
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(InvalidInput, match="UUID"):
        order_id(bad)


def test_the_legacy_reader_canonicalises_what_earlier_versions_accepted() -> None:
    for stored in [U.upper(), "{" + U + "}", U.replace("-", ""), "urn:uuid:" + U]:
        assert canonical_legacy_order_id(stored) == U
        assert upcast_canonical_order_id_v1_v2({"orderId": stored, "x": 1}) == {
            "orderId": U,
            "x": 1,
        }
    assert canonical_legacy_order_id("garbage") == "garbage"
    assert upcast_canonical_order_id_v1_v2({"orderId": None}) == {"orderId": None}


def _stock(order: str | None) -> product.InventoryUpdated:
    return product.InventoryUpdated(
        "SKU-1", product.StockChange.SHIPMENT, 1, 0, 0, OrderId(order) if order else None, NOW
    )


def test_the_integrity_check_refuses_an_event_for_another_stream() -> None:
    shipped = order.OrderShipped(OrderId(U), NOW)
    integrity.check({f"order-{U}": [shipped]}, {f"order-{U}": True})
    with pytest.raises(integrity.IntegrityError, match="decided for"):
        integrity.check({f"order-{U.upper()}": [shipped]}, {f"order-{U.upper()}": True})


def test_the_integrity_check_refuses_a_reference_to_an_order_the_command_did_not_establish() -> (
    None
):
    stock = _stock(U.upper())  # a raw spelling slipped through: no such stream was loaded
    with pytest.raises(integrity.IntegrityError, match="refers to"):
        integrity.check({"product-SKU-1": [stock]}, {"product-SKU-1": True, f"order-{U}": True})
    integrity.check({"product-SKU-1": [_stock(U)]}, {"product-SKU-1": True, f"order-{U}": True})
    with pytest.raises(integrity.IntegrityError):
        integrity.check({"product-SKU-1": [_stock(U)]}, {"product-SKU-1": True})


def test_a_decider_names_the_order_by_its_state_not_by_the_command() -> None:
    placed = order.OrderPlaced(
        OrderId(U), "ann", (order.OrderLine("A", 1, Decimal("1.00")),), Decimal("1.00"), NOW
    )
    state = order.evolve(None, placed)
    actor = order.Actor("ann", "customer")
    with pytest.raises(InvalidInput, match="loaded as"):
        order.decide(order.PayOrder(OrderId(U.upper()), Decimal("1.00"), actor, NOW), state)


def test_a_document_that_repeats_a_field_is_refused_before_validation() -> None:
    repeated = parse("{ products { edges { " + "node { sku name } " * 300 + "} } }")
    started = time.perf_counter()
    error = check_cost(repeated)
    assert error is not None and "'node' is selected 300 times" in error.message
    assert time.perf_counter() - started < 0.5  # linear, not the validator's quadratic
    spread = parse(
        "query { ...A ...A ...A } fragment A on Query { products { ...B ...B ...B } }"
        " fragment B on ProductConnection { edges { node { sku } } }"
    )
    assert check_cost(spread) is not None  # `edges` nine times once fragments are merged
    wide = parse(
        "{ " + " ".join(f"a{i}: products {{ edges {{ cursor }} }}" for i in range(400)) + " }"
    )
    error = check_cost(wide)
    assert error is not None and str(MAX_FIELDS) in error.message
    assert check_cost(parse("{ products { edges { node { sku name } } } }")) is None


@pytest.mark.parametrize("cyclic", [False, True])
def test_fragments_that_spread_each_other_cannot_multiply_the_work(cyclic: bool) -> None:
    n = 14  # 8^14 expansions if spreads were free
    last = "...F0" if cyclic else "...Missing"
    fragments = (
        " ".join(f"fragment F{i} on Query {{ " + f"...F{i + 1} " * 8 + "}" for i in range(n - 1))
        + f" fragment F{n - 1} on Query {{ {last} }}"
    )
    started = time.perf_counter()
    error = check_cost(parse("{ ...F0 } " + fragments))
    assert error is not None and "more than" in error.message
    assert time.perf_counter() - started < 0.5


def test_an_unused_fragment_is_checked_too() -> None:
    body = "products { pageInfo { hasNextPage } } " * 280
    error = check_cost(parse("{ __typename } fragment X on Query { " + body + "}"))
    assert error is not None and "'products' is selected 280 times" in error.message


def test_nesting_is_measured_without_recursion() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    assert too_deep({"v": deep})
    assert not too_deep({"lines": [{"sku": "A", "quantity": 1}]})


@pytest.mark.parametrize(
    "bad", ["\u0661\u0662", "1_0", "1e3", "0x10", "\u0661.00", "9" * 25, "", " ", "NaN", "Infinity"]
)
def test_money_and_positions_take_ascii_digits_only(bad: str) -> None:
    with pytest.raises(InvalidInput):
        _parse_decimal(bad)
    with pytest.raises(InvalidInput):
        money(bad)
    with pytest.raises(InvalidInput):
        parse_position(bad)
    assert _parse_decimal("19.99") == Decimal("19.99") and parse_position("12") == 12


def _token(claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"sub": "a", "role": "staff", "exp": 10**30}, ""),
        ({"sub": "a", "role": "staff", "exp": str(int(time.time()) + 3600)}, ""),
        ({"sub": "a", "role": "staff", "exp": int(time.time()) + 40 * 86400}, "days ahead"),
        ({"sub": "a\x00b", "role": "customer", "exp": int(time.time()) + 3600}, "bad sub"),
        ({"sub": "a\ud800", "role": "customer", "exp": int(time.time()) + 3600}, ""),
        ({"sub": "", "role": "customer", "exp": int(time.time()) + 3600}, ""),
        ({"sub": "a", "role": "admin", "exp": int(time.time()) + 3600}, "role"),
    ],
)
def test_tokens_with_absurd_claims_are_refused(claims: dict[str, object], why: str) -> None:
    match = why or None
    try:
        token = _token(claims)
    except (TypeError, ValueError, OverflowError):
        return  # not even encodable
    with pytest.raises(AuthError, match=match):
        verify_token(SECRET, token)


def test_audience_and_issuer_are_checked_when_configured() -> None:
    good = mint_token(SECRET, "ann", "customer", audience="shop", issuer="idp")
    assert verify_token(SECRET, good, audience="shop", issuer="idp").sub == "ann"
    with pytest.raises(AuthError):
        verify_token(SECRET, mint_token(SECRET, "ann", "customer"), audience="shop")
    with pytest.raises(AuthError):
        verify_token(SECRET, good, audience="other", issuer="idp")
    with pytest.raises(AuthError):
        verify_token(SECRET, good, audience="shop", issuer="other")


def test_any_printable_sub_is_a_valid_caller() -> None:
    for sub in ["ann smith", "Zoë", "用户", "x" * 200, str(uuid.uuid4())]:
        assert verify_token(SECRET, mint_token(SECRET, sub, "customer")).sub == sub


def test_a_token_naming_an_audience_is_refused_when_none_is_configured() -> None:
    """Before: `aud` was ignored without EVENTGRAPH_JWT_AUDIENCE, so a token meant for
    another service on the same secret was taken here."""
    elsewhere = mint_token(SECRET, "ann", "customer", audience="billing")
    with pytest.raises(AuthError, match="audience"):
        verify_token(SECRET, elsewhere)
    now = int(time.time())
    for aud in ["", [], ["billing"]]:
        with pytest.raises(AuthError):
            verify_token(
                SECRET, _token({"sub": "ann", "role": "customer", "exp": now + 60, "aud": aud})
            )
    assert verify_token(SECRET, mint_token(SECRET, "ann", "customer")).sub == "ann"


LOOK_ALIKES = [
    "alice\u200b",  # zero-width space
    "\u200balice",
    "al\u200dice",  # zero-width joiner
    "al\u200cice",  # zero-width non-joiner
    "alice\u2060",  # word joiner
    "\ufeffalice",  # byte order mark
    "alice ",  # trailing space
    " alice",
    "ali  ce",  # two spaces: one on a page
    "alice\u00a0",
    "ali\u00a0ce",  # no-break space
    "ali\u3000ce",  # ideographic space
    "\u202eecila",  # right-to-left override
    "\u202dalice",  # left-to-right override
    "\u202aalice\u202c",  # embedding and pop
    "\u202balice",
    "\u2066alice\u2069",  # isolates
    "\u2067alice",
    "\u2068alice",
    "alice\u200e",  # left-to-right mark
    "alice\u200f",
    "alice\u061c",  # Arabic letter mark
    "ali\u00adce",  # soft hyphen
    "alice\u034f",  # combining grapheme joiner
    "alice\ufe0f",  # variation selector
    "alice\u3164",  # Hangul filler
    "alice\u2800",  # blank Braille pattern
    "alice\u2028",  # line separator
    "alice\ue000",  # private use
]


@pytest.mark.parametrize("sub", LOOK_ALIKES)
def test_a_sub_with_invisible_or_bidirectional_characters_is_refused_minting_and_verifying(
    sub: str,
) -> None:
    with pytest.raises(ValueError, match="invisible or bidirectional"):
        mint_token(SECRET, sub, "customer")
    claims = {"sub": sub, "role": "customer", "exp": int(time.time()) + 60}
    with pytest.raises(AuthError, match="bad sub"):
        verify_token(SECRET, _token(claims))


def test_a_sub_is_normalised_to_nfc_when_minted_and_refused_otherwise_when_verified() -> None:
    decomposed, composed = "Zoe\u0308", "Zo\u00eb"
    minted = verify_token(SECRET, mint_token(SECRET, decomposed, "customer"))
    assert minted.sub == composed
    claims = {"sub": decomposed, "role": "customer", "exp": int(time.time()) + 60}
    with pytest.raises(AuthError, match="bad sub"):  # never merged into another spelling
        verify_token(SECRET, _token(claims))
    for sub in [
        "ann smith",
        "José",
        "Ελένη",
        "محمد",
        "\u05d9\u05d5\u05e1\u05d9",
        "사용자",
        "x" * 200,
    ]:
        assert verify_token(SECRET, mint_token(SECRET, sub, "customer")).sub == sub


@dataclass(frozen=True)
class Unregistered:
    schema_version: ClassVar[int] = 1
    occurred_at: datetime


def test_an_event_of_no_registered_aggregate_is_never_appended() -> None:
    with pytest.raises(integrity.IntegrityError, match="not an event of a registered aggregate"):
        integrity.check({"thing-1": [Unregistered(NOW)]}, {"thing-1": True})


def test_a_relay_in_production_needs_a_publish_key_of_32_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eventgraph.config import ConfigError, Settings

    monkeypatch.setenv("EVENTGRAPH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTGRAPH_PUBLISH_URL", "amqp://u:p@broker/")
    monkeypatch.delenv("EVENTGRAPH_PUBLISH_KEY", raising=False)
    monkeypatch.delenv("EVENTGRAPH_JWT_SECRET", raising=False)
    generated = Settings.from_env().resolve_publish_key()  # development: kept in the data dir
    assert len(generated) >= 32 and Settings.from_env().resolve_publish_key() == generated
    assert (tmp_path / "publish-key").stat().st_mode & 0o077 == 0
    monkeypatch.setenv("EVENTGRAPH_JWT_SECRET", "j" * 40)
    with pytest.raises(ConfigError, match="EVENTGRAPH_PUBLISH_KEY must be set"):
        Settings.from_env()
    monkeypatch.setenv("EVENTGRAPH_PUBLISH_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        Settings.from_env()
    monkeypatch.setenv("EVENTGRAPH_PUBLISH_KEY", "p" * 32)
    assert Settings.from_env().resolve_publish_key() == b"p" * 32


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "-1"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "abc"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "nan"),
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "1e-9"),  # would be no deadline, silently
        ("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "31622401"),  # over a year
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "-5"),
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "2.5"),
        ("EVENTGRAPH_LOW_STOCK_THRESHOLD", "2147483648"),  # would stop the products projection
    ],
)
def test_deadline_and_threshold_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from eventgraph.config import ConfigError, Settings

    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env()


def test_deadline_settings_make_the_shops_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from eventgraph.config import Settings

    monkeypatch.delenv("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", raising=False)
    monkeypatch.delenv("EVENTGRAPH_LOW_STOCK_THRESHOLD", raising=False)
    default = Settings.from_env().policy()
    assert (default.payment_window, default.low_stock_threshold) == (timedelta(minutes=30), 5)
    monkeypatch.setenv("EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "0")
    monkeypatch.setenv("EVENTGRAPH_LOW_STOCK_THRESHOLD", "0")
    off = Settings.from_env().policy()
    assert (off.payment_window, off.low_stock_threshold) == (None, 0)


def test_no_token_acts_as_the_server_or_shares_its_idempotency_keys() -> None:
    from application.auth import valid_sub
    from application.idempotency import Idempotency
    from domain.values import Actor

    assert not valid_sub("system:order-expiry") and valid_sub("systems-team")
    with pytest.raises(ValueError, match="system:"):
        mint_token(SECRET, "system:order-expiry", "staff")
    forged = jwt.encode(
        {"sub": "system:order-expiry", "role": "staff", "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(AuthError):
        verify_token(forged, SECRET)
    server = Idempotency.of(Actor.system("order-expiry"), "timer:k", "expireOrder", ["o1"])
    lookalike = Idempotency.of(Actor("system:order-expiry", "staff"), "timer:k", "expireOrder", ["o1"])  # fmt: skip
    assert server is not None and lookalike is not None
    assert server.key != lookalike.key and server.legacy_key is None
