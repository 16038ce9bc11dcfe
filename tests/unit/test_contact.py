"""Contact data an order may carry: shipping addresses and email addresses, pure."""

from __future__ import annotations

import pytest

from domain import contact
from domain.contact import COUNTRY_CODES, ShippingAddress, email, shipping_address
from domain.errors import InvalidInput

VALID: dict[str, str | None] = {
    "name": "Ann Example",
    "line1": "1 Main Street",
    "line2": "Flat 2",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def address(**changes: str | None) -> ShippingAddress:
    fields = {**VALID, **changes}
    return shipping_address(
        fields["name"],  # type: ignore[arg-type]
        fields["line1"],  # type: ignore[arg-type]
        fields["line2"],
        fields["city"],  # type: ignore[arg-type]
        fields["postal_code"],  # type: ignore[arg-type]
        fields["country"],  # type: ignore[arg-type]
    )


def refused(**changes: str | None) -> str:
    with pytest.raises(InvalidInput) as caught:
        address(**changes)
    return str(caught.value)


def test_a_valid_address_is_normalised() -> None:
    assert address(
        name="  Ann Example ",
        line1="\u00a01 Main Street ",
        line2="  ",
        city=" Berlin",
        postal_code=" SW1A 1AA ",
        country=" gb ",
    ) == ShippingAddress("Ann Example", "1 Main Street", None, "Berlin", "SW1A 1AA", "GB")
    assert address(line2="") == ShippingAddress(
        "Ann Example", "1 Main Street", None, "Berlin", "10115", "DE"
    )
    assert address(line2=None).line2 is None
    assert address(line2=" Flat 2 ").line2 == "Flat 2"
    assert address(country="De").country == "DE"
    assert address(postal_code="12345-6789").postal_code == "12345-6789"
    assert address(name="Zoë Ørsted-Łukasz").name == "Zoë Ørsted-Łukasz"


def test_the_fields_keep_their_order() -> None:
    assert ShippingAddress.__dataclass_fields__.keys() == VALID.keys()


@pytest.mark.parametrize("field", ["name", "line1", "city"])
def test_required_lines_are_not_blank(field: str) -> None:
    assert field in refused(**{field: ""})
    assert field in refused(**{field: "   "})


@pytest.mark.parametrize("field", ["name", "line1", "line2", "city"])
def test_lines_are_at_most_200_characters(field: str) -> None:
    assert getattr(address(**{field: "x" * 200}), field) == "x" * 200
    assert getattr(address(**{field: f"  {'x' * 200}  "}), field) == "x" * 200
    long = "x" * 150 + "y" * 51
    message = refused(**{field: long})
    assert field in message
    assert long not in message
    assert "xxxxxxxxxx" not in message


@pytest.mark.parametrize("field", ["name", "line1", "line2", "city", "postal_code", "country"])
@pytest.mark.parametrize(
    "bad",
    [
        "\x00",
        "\t",
        "\n",
        "\r",
        "\x7f",
        "\x85",
        "\u202e",
        "\u200b",
        "\u200d",
        "\ufeff",
        "\u2028",
        "\u2029",
    ],
)
def test_no_control_or_invisible_characters_anywhere(field: str, bad: str) -> None:
    value = {"postal_code": "10115", "country": "DE"}.get(field, "Main Street")
    message = refused(**{field: f"{value[:2]}{bad}{value[2:]}"})
    assert bad not in message
    assert ("postalCode" if field == "postal_code" else field) in message
    # at either end too: refused, not stripped away
    refused(**{field: value + bad})
    refused(**{field: bad + value})


def test_a_lone_surrogate_is_refused() -> None:
    assert "name" in refused(name="Ann \ud800")


@pytest.mark.parametrize(
    "postal_code", ["", "   ", "x" * 21, "10115!", "10_115", "1011.5", "--", "١٢٣"]
)
def test_postal_codes_are_short_letters_digits_spaces_and_hyphens(postal_code: str) -> None:
    message = refused(postal_code=postal_code)
    assert "postalCode" in message
    if len(postal_code) > 20:
        assert postal_code not in message


def test_a_postal_code_may_be_20_characters() -> None:
    assert address(postal_code="A" * 20).postal_code == "A" * 20


@pytest.mark.parametrize(
    "country", ["XX", "UK", "ZZ", "XK", "EU", "DEU", "D", "", "d e", "1A", "ß", "ﬆ", "\uff24\uff25"]
)
def test_country_is_an_assigned_alpha_2_code(country: str) -> None:
    assert "country" in refused(country=country)


def test_the_first_bad_field_is_the_one_named() -> None:
    message = refused(name="", city="", country="XX")
    assert message.startswith("name")


def test_non_strings_are_refused() -> None:
    assert "name" in refused(name=42)  # type: ignore[arg-type]
    assert "line2" in refused(line2=b"Flat 2")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="email"):
        email(None)  # type: ignore[arg-type]


def test_the_country_codes_are_the_249_assigned_ones() -> None:
    assert len(COUNTRY_CODES) == 249
    assert {"DE", "GB", "US", "JP", "BR", "ZA", "AX", "BQ", "CW", "SS", "SX"} <= COUNTRY_CODES
    assert not {"UK", "XK", "EU", "AN", "CS", "YU", "ZZ", "XX"} & COUNTRY_CODES
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in COUNTRY_CODES)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Example@Example.COM \u3000", "Ann.Example@example.com"),
        ("a+tag@mail.example.co.uk", "a+tag@mail.example.co.uk"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("!#$%&'*+/=?^_`{|}~-@example.com", "!#$%&'*+/=?^_`{|}~-@example.com"),
        ("x@a-b.example.org", "x@a-b.example.org"),
        ("x@123.example.de", "x@123.example.de"),
        ("x@XN--BCHER-KVA.example", "x@xn--bcher-kva.example"),
        ("x@example.xn--p1ai", "x@example.xn--p1ai"),
        ("L" * 64 + "@example.com", "L" * 64 + "@example.com"),
    ],
)
def test_a_valid_email_is_normalised(given: str, stored: str) -> None:
    assert email(given) == stored


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "a",
        "a@b",
        "@b.com",
        "a@",
        "a@@b.com",
        "a@b@c.com",
        ".a@b.com",
        "a.@b.com",
        "a..b@b.com",
        "a@-b.com",
        "a@b-.com",
        "a@b..com",
        "a@.b.com",
        "a@b.com.",
        "a@b.c",
        "a@b.c0m",
        "a@b.123",
        "a@b_c.com",
        "a b@c.com",
        "a@b c.com",
        "a\t@b.com",
        '"a b"@c.com',
        "a@[127.0.0.1]",
        "ä@b.com",
        "a@bücher.de",
        "a\x00@b.com",
        "a@b.com\n",
        "a\u202e@b.com",
        "a\u200b@b.com",
        "a@" + "x" * 64 + ".com",
        "x" * 65 + "@example.com",
    ],
)
def test_bad_emails_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        email(bad)
    message = str(caught.value)
    assert message.startswith("email")
    if len(bad) > 20:
        assert bad.strip() not in message


def test_an_email_is_at_most_254_characters() -> None:
    domain = ".".join(["x" * 63, "y" * 63, "z" * 63, "example", "com"])  # 203 characters
    at_limit = "l" * 50 + "@" + domain
    assert len(at_limit) == 254
    assert email(at_limit) == at_limit
    too_long = "l" * 51 + "@" + domain
    assert len(too_long) == 255
    with pytest.raises(InvalidInput) as caught:
        email(too_long)
    assert "254" in str(caught.value)
    assert too_long not in str(caught.value)
    assert "lllllllll" not in str(caught.value)


def test_the_module_imports_only_the_domain_and_the_standard_library() -> None:
    import ast
    import sys
    from pathlib import Path

    assert contact.__file__ is not None
    tree = ast.parse(Path(contact.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top == "domain" or top in sys.stdlib_module_names, name
