"""Upcasters for the shop's events: pure functions from one schema version's data to the
next. Stored events are never rewritten; these run as events are read."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

Data = dict[str, Any]


def upcast_order_placed_v1_v2(data: Data) -> Data:
    """v1 had no `total`: it is the sum of the lines, each priced at placing time."""
    total = sum(
        (Decimal(line["unitPrice"]) * line["quantity"] for line in data["lines"]), Decimal("0.00")
    )
    return {**data, "total": str(total.quantize(Decimal("0.01")))}


UPCASTERS: list[tuple[str, int, Callable[[Data], Data]]] = [
    ("OrderPlaced", 1, upcast_order_placed_v1_v2),
]
