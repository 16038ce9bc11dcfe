"""Every aggregate of the domain, in one place. A new aggregate is a module ending in
`AGGREGATE = AggregateType(...)` and one entry here; its events are then encoded, decoded,
checked and folded everywhere."""

from __future__ import annotations

from domain import customer, order, product, review, wishlist
from domain.aggregate import AggregateType

AGGREGATES: tuple[AggregateType, ...] = (
    product.AGGREGATE,
    order.AGGREGATE,
    review.AGGREGATE,
    wishlist.AGGREGATE,
    customer.AGGREGATE,
)

EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls for aggregate in AGGREGATES for cls in aggregate.events
}
_BY_EVENT: dict[type, AggregateType] = {
    cls: aggregate for aggregate in AGGREGATES for cls in aggregate.events
}


def of_stream(stream_id: str) -> AggregateType:
    for aggregate in AGGREGATES:
        if stream_id.startswith(aggregate.prefix):
            return aggregate
    raise LookupError(f"no aggregate owns stream {stream_id!r}")


def of_event(event: object) -> AggregateType:
    found = _BY_EVENT.get(type(event))
    if found is None:
        raise LookupError(f"{type(event).__name__} is not an event of a registered aggregate")
    return found
