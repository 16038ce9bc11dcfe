"""Personal data in the model: orders placed with a shipping address and an email, customers
forgotten (by themselves or staff; another customer is refused) and ordering again. The
orders read model shows each order's address and email until its customer is forgotten, null
after; and no plaintext of a forgotten customer is anywhere readable: in no table of either
database, and in no answer of `order` or `exportCustomer`."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from tests.kit.documents import ORDER
from tests.model.features.orders import Orders
from tests.model.machine import Case

PLACE_WITH = f"""mutation($lines: [OrderLineInput!]!, $address: ShippingAddressInput,
  $email: String) {{ placeOrder(lines: $lines, shippingAddress: $address, email: $email) {{
  {ORDER} }} }}"""
FORGET = """mutation($c: String!) { forgetCustomer(customerId: $c) {
  customerId position events { eventId } } }"""
EXPORT = "query($c: String!) { exportCustomer(customerId: $c) { type data } }"


def address(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "line1": "1 Model Street",
        "city": "Hypothesis",
        "postalCode": "HY1 1PO",
        "country": "NL",
    }


class Personal(Orders):
    def start(self) -> None:
        self.contacts: dict[str, tuple[str, str, str | None]] = {}
        """order id: (customer, the address's name, email), while readable."""
        self.forgotten: set[str] = set()
        """The names and emails of forgotten customers' orders: never readable again."""

    @rule(data=st.data(), customer=st.integers(0, 2), with_email=st.booleans())
    def place_order_with_contact(
        self, data: st.DataObject, customer: int, with_email: bool
    ) -> None:
        who = self.customers[customer]
        lines = self._lines(data)
        name = f"N{uuid.uuid4().hex[:12]}"
        email = f"{name.lower()}@example.org" if with_email else None
        variables = {
            "lines": [{"sku": s, "quantity": q} for s, q in lines],
            "address": address(name),
            "email": email,
        }
        payload = self.expect(who, PLACE_WITH, variables, self._place_outcome(who, lines, None))
        if payload is not None:
            self.placed(who, lines, payload)
            self.contacts[payload["orderId"]] = (who, name, email)

    @rule(data=st.data())
    def forget_customer(self, data: st.DataObject) -> None:
        """A customer forgets themself, staff forget anyone; another customer: FORBIDDEN."""
        who = data.draw(st.sampled_from([*self.customers, self.staff]), label="who")
        target = data.draw(st.sampled_from(self.customers), label="forgotten")
        allowed = who in (target, self.staff)
        payload = self.expect(who, FORGET, {"c": target}, set() if allowed else {"FORBIDDEN"})
        if payload is None:
            return
        assert payload["customerId"] == target
        for order_id, (customer, name, email) in list(self.contacts.items()):
            if customer == target:
                self.forgotten |= {name, *([email] if email else [])}
                del self.contacts[order_id]

    @precondition(lambda self: bool(self.forgotten))
    @rule(data=st.data())
    def export_after_forget(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from(self.customers), label="exported")
        body = self.call(self.staff, EXPORT, {"c": who})
        assert not body.get("errors"), body
        text = str(body["data"])
        assert not any(marker in text for marker in self.forgotten)

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        who = self.customers[1]
        lines = [{"sku": self.sku_of(0), "quantity": 1}]
        return [
            (who, PLACE_WITH, {"lines": lines, "address": address(text), "email": None}),
            (who, PLACE_WITH, {"lines": lines, "address": None, "email": text}),
            (who, PLACE_WITH, {"lines": lines, "address": {**address("A"), "country": text}}),
            (self.staff, FORGET, {"c": text}),
            (self.staff, EXPORT, {"c": text}),
        ]

    def check(self) -> None:
        """Each order's address and email in the read model as the model has them (null once
        forgotten), and no forgotten customer's plaintext in any table of either database."""
        rows = self.s.db.fetch(
            "SELECT order_id, customer_id, shipping_address, email FROM readmodel.orders"
            " WHERE customer_id = any($1::text[])",
            self.customers,
        )
        for row in rows:
            known = self.contacts.get(row["order_id"])
            if known is None:
                if row["shipping_address"] is not None:  # a forgotten customer's order
                    assert row["shipping_address"]["name"] not in self.forgotten, row
                continue
            _, name, email = known
            assert row["shipping_address"]["name"] == name and row["email"] == email, row
        if self.forgotten:
            markers = sorted(self.forgotten)
            found = self.s.db.run(self.s.db.scan(markers))
            assert found == [], found
