"""Upcasters for the shop's events: pure functions from one schema version's data to the
next. Stored events are never rewritten; these run as events are read."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from domain.ids import canonical_legacy_order_id

Data = dict[str, Any]


def upcast_order_placed_v1_v2(data: Data) -> Data:
    """v1 had no `total`: it is the sum of the lines, each priced at placing time."""
    total = sum(
        (Decimal(line["unitPrice"]) * line["quantity"] for line in data["lines"]), Decimal("0.00")
    )
    return {**data, "total": str(total.quantize(Decimal("0.01")))}


def upcast_canonical_order_id_v1_v2(data: Data) -> Data:
    """v1 of the events that name an existing order stored the order id as the client spelt
    it (`{…}`, upper case, no hyphens), while the stream and the read models use the
    canonical form: v2 stores the canonical form, and this brings v1 to it."""
    if data.get("orderId") is None:
        return data
    return {**data, "orderId": canonical_legacy_order_id(data["orderId"])}


def upcast_order_placed_v2_v3(data: Data) -> Data:
    """v2 had no payment deadline: orders placed before deadlines existed never expire
    (stock they hold is released by a cancel, as it always was)."""
    return {**data, "expiresAt": None}


UPCASTERS: list[tuple[str, int, Callable[[Data], Data]]] = [
    ("OrderPlaced", 1, upcast_order_placed_v1_v2),
    ("OrderPlaced", 2, upcast_order_placed_v2_v3),
    ("PaymentProcessed", 1, upcast_canonical_order_id_v1_v2),
    ("OrderShipped", 1, upcast_canonical_order_id_v1_v2),
    ("OrderCancelled", 1, upcast_canonical_order_id_v1_v2),
    ("PaymentRefunded", 1, upcast_canonical_order_id_v1_v2),
    ("InventoryUpdated", 1, upcast_canonical_order_id_v1_v2),
]
