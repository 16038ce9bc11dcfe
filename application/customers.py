"""A customer's personal data: forget them (`ForgetCustomer`: destroys their key and records
`CustomerForgotten`, in one transaction: see `eventstore/personal.py`), and every event
about them for the right of access (`export`)."""

from __future__ import annotations

from dataclasses import dataclass

from application.commands import Command, handles
from application.decision import CommandResult, Loaded
from application.handler import CommandHandler
from domain import customer
from domain.aggregate import DomainEvent
from domain.errors import InvalidInput
from domain.values import Actor
from eventstore.events import RecordedEvent
from eventstore.store import MAX_READ, EventStore

MAX_EXPORT = 100_000
"""The most events one export returns (a customer with more is refused, not cut short)."""
EXPORTED_BY = "'OrderPlaced', 'ReviewPosted', 'WishlistItemAdded'"
"""The events whose `customerId` makes their stream the customer's: an order, a review, a
wishlist (migration 0010 indexes exactly these: the query repeats the index's predicate)."""


@dataclass(frozen=True)
class ForgetCustomer(Command[customer.Customer]):
    actor: Actor
    customer_id: str


@handles(ForgetCustomer)
async def forget_customer(
    handler: CommandHandler, command: ForgetCustomer
) -> CommandResult[customer.Customer]:
    actor = command.actor
    customer_id = customer.customer_id(command.customer_id)
    actor.require_access(customer_id, "only that customer, or staff, can forget them")
    stream = customer.stream_id(customer_id)

    def decide(loaded: Loaded) -> dict[str, list[DomainEvent]]:
        decision = customer.ForgetCustomer(customer_id, actor, handler.clock())
        return {stream: list(customer.decide(decision, loaded.state(stream)))}

    executed = await handler.execute(actor, "ForgetCustomer", [stream], decide)
    return await handler.with_state(executed, stream)


_STREAMS_OF = f"""
SELECT DISTINCT stream_id FROM eventgraph.events
 WHERE type IN ({EXPORTED_BY}) AND data->>'customerId' = $1
"""


async def export(store: EventStore, actor: Actor, customer_id: str) -> list[RecordedEvent]:
    """Every event of every stream about `customer_id` (their orders, reviews, wishlist and
    customer streams), in position order, personal data opened as far as keys exist. The
    customer themself or staff; anyone else: FORBIDDEN."""
    customer_id = customer.customer_id(customer_id)
    actor.require_access(customer_id, "only that customer, or staff, can export their data")
    rows = await store.pool.fetch(_STREAMS_OF, customer_id)
    streams = {r["stream_id"] for r in rows} | {customer.stream_id(customer_id)}
    found: list[RecordedEvent] = []
    for stream in sorted(streams):
        after = 0
        while page := await store.read_all(after, MAX_READ, stream_id=stream):
            found += page
            after = page[-1].position
            if len(found) > MAX_EXPORT:
                raise InvalidInput("too many events to export at once; ask the operators")
    return sorted(found, key=lambda e: e.position)
