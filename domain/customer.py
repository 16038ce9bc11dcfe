"""The Customer aggregate, as far as personal data goes: a customer (or staff, for them) asks
to be forgotten, and `CustomerForgotten` records it. The forgetting itself is the destruction
of the customer's personal-data key beside it (`eventstore/personal.py`), in the same
transaction; the event tells every reader (read models, the relay's consumers) to erase the
copies they made while the key existed. Forgetting twice is harmless: a second forget
erases whatever was given since (a forgotten customer may order again, under a new key)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from domain.aggregate import AggregateType
from domain.errors import InvalidInput
from domain.values import Actor, is_clean_text

STREAM_PREFIX = "customer-"
MAX_CUSTOMER_ID = 200
_NAMESPACE = uuid.UUID("5f0e6a8c-2d4b-4c1e-9a7f-3b8d1e6c9f20")


def customer_id(value: str) -> str:
    """A customer id as a client wrote it: any text a token may carry, within bounds."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_CUSTOMER_ID
        or not is_clean_text(value)
    ):
        raise InvalidInput(
            f"customerId must be 1 to {MAX_CUSTOMER_ID} characters, without control characters"
        )
    return value


def stream_id(customer: str) -> str:
    """A customer's stream: named by a uuid5 of the id (stream ids are ASCII; customer ids are
    any Unicode a token carries, and may be personal data themselves)."""
    return f"{STREAM_PREFIX}{uuid.uuid5(_NAMESPACE, customer)}"


@dataclass(frozen=True, slots=True)
class CustomerForgotten:
    schema_version: ClassVar[int] = 1
    customer_id: str
    forgotten_by: str
    """Who asked: the customer themself, or a staff member's id."""
    occurred_at: datetime

    forgets: ClassVar[str] = "customer_id"
    """Appending it destroys this subject's personal-data key, in the same transaction."""


@dataclass(frozen=True, slots=True)
class ForgetCustomer:
    customer_id: str
    actor: Actor
    at: datetime


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    forgotten: int
    """How many times this customer was forgotten."""


CustomerState = Customer | None
initial_state: CustomerState = None


def evolve(state: CustomerState, event: CustomerForgotten) -> CustomerState:
    return Customer(event.customer_id, (state.forgotten if state else 0) + 1)


def decide(command: ForgetCustomer, state: CustomerState) -> list[CustomerForgotten]:
    """The customer themself or staff; anyone else: FORBIDDEN."""
    customer = customer_id(command.customer_id)
    command.actor.require_access(customer, "only that customer, or staff, can forget them")
    return [CustomerForgotten(customer, command.actor.id, command.at)]


AGGREGATE = AggregateType(
    prefix=STREAM_PREFIX,
    events=(CustomerForgotten,),
    evolve=evolve,
    initial=initial_state,
    state_type=Customer,
    subject=lambda event: stream_id(event.customer_id),
)
