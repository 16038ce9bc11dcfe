"""Personal contact data an order may carry: a shipping address and an email address.

Surrounding spaces are stripped; control characters (tab and newline too), invisible
formatting characters and line separators are refused wherever they stand, never stripped."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from domain.errors import InvalidInput
from domain.values import MAX_NAME, is_clean_text

MAX_ADDRESS_LINE: Final = MAX_NAME
"""Longest name, address line or city, after stripping."""
POSTAL_CODE: Final = re.compile(r"[A-Za-z0-9 -]{1,20}")
MAX_EMAIL: Final = 254
MAX_LOCAL_PART: Final = 64
LOCAL_PART: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
)
"""A dot-atom: no leading or trailing dot, no two dots in a row."""
LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
"""One domain label: 1 to 63 letters, digits and hyphens, no hyphen at either end."""
TOP_LABEL: Final = re.compile(r"[A-Za-z]{2,63}|[Xx][Nn]--[A-Za-z0-9-]{0,58}[A-Za-z0-9]")
"""The last label: letters only, or an internationalised top-level domain in punycode."""
_REFUSED_CATEGORIES: Final = frozenset({"Cf", "Zl", "Zp"})
"""Format characters (bidi overrides, zero-width) and line/paragraph separators; control
characters and lone surrogates are refused by `is_clean_text`."""

COUNTRY_CODES: Final[frozenset[str]] = frozenset(
    {
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW",
        "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN",
        "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG",
        "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ",
        "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI",
        "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL",
        "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR",
        "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
        "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA",
        "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME",
        "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU",
        "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP",
        "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR",
        "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD",
        "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
        "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
        "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE",
        "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
    }
)  # fmt: skip
"""The 249 officially assigned ISO 3166-1 alpha-2 codes (no user-assigned ones such as XK,
no reserved ones such as UK)."""


@dataclass(frozen=True, slots=True)
class ShippingAddress:
    """Where an order goes, normalised by `shipping_address`."""

    name: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


def _is_plain_text(value: str) -> bool:
    """No control, format (bidi, zero-width) or line/paragraph separator characters."""
    return is_clean_text(value) and not any(
        unicodedata.category(c) in _REFUSED_CATEGORIES for c in value
    )


def _clean(value: object, *, field: str) -> str:
    """`value` stripped, if it is a string of plain text; else InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    if not _is_plain_text(value):
        raise InvalidInput(f"{field} must not contain control or invisible formatting characters")
    return value.strip()


def _text(value: object, *, field: str, required: bool = True) -> str:
    """A name, address line or city, stripped; empty only if not `required`."""
    cleaned = _clean(value, field=field)
    if required and not cleaned:
        raise InvalidInput(f"{field} must not be blank")
    if len(cleaned) > MAX_ADDRESS_LINE:
        raise InvalidInput(f"{field} must be at most {MAX_ADDRESS_LINE} characters")
    return cleaned


def shipping_address(
    name: str,
    line1: str,
    line2: str | None,
    city: str,
    postal_code: str,
    country: str,
) -> ShippingAddress:
    """A valid shipping address: text stripped, an empty `line2` dropped, `country` upper-cased.
    The fields are checked in order, so the first bad one is the one named."""
    name = _text(name, field="name")
    line1 = _text(line1, field="line1")
    line2 = None if line2 is None else _text(line2, field="line2", required=False) or None
    city = _text(city, field="city")
    postal_code = _clean(postal_code, field="postalCode")
    if not POSTAL_CODE.fullmatch(postal_code) or not any(c.isalnum() for c in postal_code):
        raise InvalidInput("postalCode must be 1 to 20 characters of letters, digits, spaces and -")
    country = _clean(country, field="country")
    # ASCII first: "ß".upper() is "SS", a code
    country = country.upper() if country.isascii() else ""
    if country not in COUNTRY_CODES:
        raise InvalidInput("country must be an assigned ISO 3166-1 alpha-2 code such as DE or GB")
    return ShippingAddress(name, line1, line2, city, postal_code, country)


def email(value: str) -> str:
    """A valid email address, stripped, its domain lower-cased (the local part as given)."""
    address = _clean(value, field="email")
    if len(address) > MAX_EMAIL:
        raise InvalidInput(f"email must be at most {MAX_EMAIL} characters")
    local, at, domain = address.partition("@")
    labels = domain.split(".")
    if not (
        at
        and 1 <= len(local) <= MAX_LOCAL_PART
        and LOCAL_PART.fullmatch(local)
        and len(labels) >= 2
        and all(LABEL.fullmatch(label) for label in labels)
        and TOP_LABEL.fullmatch(labels[-1])
    ):
        raise InvalidInput("email: not a valid email address")
    return f"{local}@{domain.lower()}"
