"""A customer's personal data in the API: `forgetCustomer` (the right to erasure) and
`exportCustomer` (the right of access), for the customer themself or staff."""

from __future__ import annotations

import strawberry

from application.customers import ForgetCustomer, export
from schema.context import Info
from schema.feature import Feature
from schema.scalars import Position
from schema.types import DomainEvent


@strawberry.type
class ForgetCustomerPayload:
    customer_id: str
    position: Position = strawberry.field(
        description="Position of the event that records the forgetting."
    )
    events: list[DomainEvent] = strawberry.field(description="The events it appended.")


@strawberry.type
class CustomerQuery:
    @strawberry.field(
        description=(
            "The customer themself or staff: every event that concerns that customer, in\n"
            "position order, with their personal data as far as it can still be read (the\n"
            "right of access). Another customer: FORBIDDEN."
        )
    )
    async def export_customer(self, info: Info, customer_id: str) -> list[DomainEvent]:
        events = await export(info.context.services.store, info.context.actor, customer_id)
        return [DomainEvent.from_recorded(e) for e in events]


@strawberry.type
class CustomerMutation:
    @strawberry.mutation(
        description=(
            "The customer themself or staff: destroy the customer's personal-data key (see\n"
            "Personal data). Repeating it is harmless. Another customer: FORBIDDEN."
        )
    )
    async def forget_customer(self, info: Info, customer_id: str) -> ForgetCustomerPayload:
        result = await info.context.handle(ForgetCustomer(info.context.actor, customer_id))
        return ForgetCustomerPayload(
            customer_id=customer_id,
            position=result.position,
            events=[DomainEvent.from_recorded(e) for e in result.events],
        )


FEATURE = Feature(CustomerQuery, CustomerMutation)
