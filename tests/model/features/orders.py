"""Orders in the model: placed (with and without idempotency keys, and as concurrent
duplicates under one key), paid, shipped and cancelled, by their customer, another customer
or staff, with order ids in every spelling that parses and many that do not; the stock they
reserve and release, and the sales dashboard they move."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from tests.kit.documents import CANCEL, PAY, PLACE, SHIP
from tests.model.features.products import CENT, Products
from tests.model.machine import SPELLINGS, WINDOW, Case, caught_up, settled

UNPAID = ("PLACED", "EXPIRED")
HOLDING = ("PLACED", "PAID")
"""The statuses of orders whose lines are reserved stock."""


@dataclass
class ModelOrder:
    customer: str
    lines: list[tuple[str, int, Decimal]]
    expires_at: datetime
    status: str = "PLACED"
    paid: Decimal = Decimal("0.00")

    @property
    def total(self) -> Decimal:
        return sum((p * q for _, q, p in self.lines), Decimal("0.00"))


@dataclass
class Dashboard:
    placed: int = 0
    paid: int = 0
    shipped: int = 0
    cancelled: int = 0
    expired: int = 0
    revenue: Decimal = Decimal("0.00")


class Orders(Products):
    def start(self) -> None:
        self.orders: dict[str, ModelOrder] = {}
        self.keys: dict[tuple[str, str], tuple[str, Any, str]] = {}
        """(customer, idempotency key): (command, its arguments, the order id it answered)."""
        self.dash = Dashboard()
        self.units: dict[str, int] = {}
        """Units sold per sku: in orders neither cancelled nor expired."""

    def opening(self, data: st.DataObject) -> None:
        """An order of 0 to 6 of the first product (0: none), so that most examples have a
        deadline to move the clock against."""
        settled(self.s)
        caught_up(self.s)
        self.base = self._dashboard_row()
        """The dashboard counts every example's orders: this one's count from here."""
        opening = data.draw(st.integers(0, 6), label="opening order")
        if opening:
            who, lines = self.customers[0], [(self.sku_of(0), opening)]
            variables = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "key": None}
            payload = self.expect(who, PLACE, variables, set())
            assert payload is not None
            self.placed(who, lines, payload)

    def _dashboard_row(self) -> dict[str, Any]:
        rows = self.s.db.fetch("SELECT * FROM readmodel.sales_totals")
        return rows[0] if rows else {}

    def _lines(self, data: st.DataObject) -> list[tuple[str, int]]:
        """Mostly products that exist (so that orders are placed, paid and left to expire),
        sometimes any of 0-6."""
        known = [i for i in range(7) if self.sku_of(i) in self.products]
        indices = st.integers(0, 6)
        if known and data.draw(st.integers(0, 3), label="known") > 0:
            indices = st.sampled_from(known)
        skus = data.draw(st.lists(indices, min_size=1, max_size=3, unique=True), label="skus")
        return [(self.sku_of(i), data.draw(st.integers(1, 6), label="qty")) for i in skus]

    def _place_outcome(self, who: str, lines: list[tuple[str, int]], key: str | None) -> set[str]:
        if key is not None and (who, key) in self.keys:
            command, args, _ = self.keys[(who, key)]
            return set() if (command, args) == ("place", sorted(lines)) else {"CONFLICT"}
        if any(sku not in self.products for sku, _ in lines):
            return {"NOT_FOUND"}
        if any(q > self.products[s].available for s, q in lines):
            return {"INSUFFICIENT_STOCK"}
        return set()

    def placed(self, who: str, lines: list[tuple[str, int]], payload: dict[str, Any]) -> None:
        order_id = payload["orderId"]
        view = payload["order"]
        assert order_id == str(uuid.UUID(order_id)) and view["status"] == "PLACED"
        expires_at = datetime.fromisoformat(view["expiresAt"])
        assert expires_at == datetime.fromisoformat(view["placedAt"]) + WINDOW
        [placed] = [e for e in payload["events"] if e["type"] == "OrderPlaced"]
        assert datetime.fromisoformat(placed["data"]["expiresAt"]) == expires_at
        self.orders[order_id] = ModelOrder(
            who, [(s, q, self.products[s].price) for s, q in lines], expires_at
        )
        for sku, quantity in lines:
            self.move_stock(sku, reserved=quantity)
            self.units[sku] = self.units.get(sku, 0) + quantity
        self.dash.placed += 1
        assert Decimal(payload["order"]["total"]) == self.orders[order_id].total

    @rule(data=st.data(), customer=st.integers(0, 2), keyed=st.sampled_from(["no", "new", "old"]))
    def place_order(self, data: st.DataObject, customer: int, keyed: str) -> None:
        who = self.customers[customer]
        lines = self._lines(data)
        mine = [k for (c, k) in self.keys if c == who]
        key = {"no": None, "new": uuid.uuid4().hex, "old": mine[0] if mine else None}[keyed]
        errors = self._place_outcome(who, lines, key)
        replay = key is not None and (who, key) in self.keys and not errors
        variables = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "key": key}
        payload = self.expect(who, PLACE, variables, errors, replay=replay)
        if payload is None:
            return
        if replay:
            assert key is not None
            assert payload["orderId"] == self.keys[(who, key)][2]
            return
        self.placed(who, lines, payload)
        if key is not None:
            self.keys[(who, key)] = ("place", sorted(lines), payload["orderId"])

    @rule(data=st.data(), customer=st.integers(0, 2), copies=st.integers(2, 5))
    def concurrent_duplicates(self, data: st.DataObject, customer: int, copies: int) -> None:
        """The same placeOrder with the same key, sent at once: one order, one result."""
        who = self.customers[customer]
        lines = self._lines(data)
        key = uuid.uuid4().hex
        errors = self._place_outcome(who, lines, key)
        variables = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "key": key}
        before = self.s.db.head_count()
        with ThreadPoolExecutor(copies) as pool:
            bodies = list(pool.map(lambda _: self.call(who, PLACE, variables), range(copies)))
        codes = [{e["extensions"]["code"] for e in b.get("errors") or []} for b in bodies]
        if errors:
            assert all(c and c <= errors for c in codes), codes
            assert self.s.db.head_count() == before
            return
        assert codes == [set()] * copies, codes
        ids = {b["data"]["placeOrder"]["orderId"] for b in bodies}
        assert len(ids) == 1, "every duplicate got the first result"
        payload = bodies[0]["data"]["placeOrder"]
        assert self.s.db.head_count() - before == len(payload["events"]), "appended once"
        self.placed(who, lines, payload)
        self.keys[(who, key)] = ("place", sorted(lines), payload["orderId"])

    def _order(self, data: st.DataObject) -> tuple[str, str]:
        """(canonical id, the spelling sent) of a known order, or of an unknown one."""
        known = list(self.orders)  # in the order placed: the same in every run
        ids: st.SearchStrategy[str] = st.uuids().map(str)
        if known and bool(data.draw(st.booleans())):
            ids = st.sampled_from(known)
        order_id = data.draw(ids)
        spelling = data.draw(st.sampled_from(SPELLINGS))
        return order_id, spelling(order_id)

    def _actor(self, data: st.DataObject, order: ModelOrder | None) -> str:
        choices = [self.staff, *self.customers]
        who = data.draw(st.sampled_from(choices))
        if order is not None and data.draw(st.booleans()):
            who = order.customer
        return who

    @rule(data=st.data(), wrong_amount=st.booleans(), keyed=st.booleans())
    def pay_order(self, data: st.DataObject, wrong_amount: bool, keyed: bool) -> None:
        order_id, spelt = self._order(data)
        order = self.orders.get(order_id)
        who = self._actor(data, order)
        due = order.total - order.paid if order else Decimal("1.00")
        amount = due + CENT if wrong_amount else due
        self._pay(who, order_id, spelt, amount, uuid.uuid4().hex if keyed else None)

    @precondition(lambda self: any(o.status in UNPAID for o in self.orders.values()))
    @rule(data=st.data(), keyed=st.booleans())
    def pay_an_unpaid_order(self, data: st.DataObject, keyed: bool) -> None:
        """Its customer pays a PLACED or EXPIRED order in full: the payment that races its
        expiry; the model knows which came first (an expired order: INVALID_STATE)."""
        unpaid = [i for i, o in self.orders.items() if o.status in UNPAID]
        order_id = data.draw(st.sampled_from(unpaid), label="order")
        order = self.orders[order_id]
        key = uuid.uuid4().hex if keyed else None
        self._pay(order.customer, order_id, order_id, order.total, key)

    def _pay(self, who: str, order_id: str, spelt: str, amount: Decimal, key: str | None) -> None:
        order = self.orders.get(order_id)
        due = order.total - order.paid if order else Decimal("1.00")
        if amount <= 0:  # validated before the order is even loaded
            errors = {"BAD_USER_INPUT"}
        elif order is None:
            errors = {"NOT_FOUND"}
        elif who != self.staff and who != order.customer:
            errors = {"FORBIDDEN"}
        elif order.status != "PLACED":
            errors = {"INVALID_STATE"}
        elif amount != due:
            errors = {"BAD_USER_INPUT"}
        else:
            errors = set()
        variables = {"id": spelt, "amount": str(amount), "key": key}
        payload = self.expect(who, PAY, variables, errors)
        if payload is not None:
            assert order is not None and payload["orderId"] == order_id
            order.status, order.paid = "PAID", order.total
            self.dash.paid += 1
            self.dash.revenue += order.total
            assert payload["order"]["status"] == "PAID" and payload["order"]["expiresAt"] is None
            if key is not None:
                retried = self.expect(who, PAY, variables, set(), replay=True)
                assert retried is not None and retried["position"] == payload["position"]

    @rule(data=st.data())
    def ship_order(self, data: st.DataObject) -> None:
        order_id, spelt = self._order(data)
        order = self.orders.get(order_id)
        who = data.draw(st.sampled_from([self.staff, self.staff, self.customers[0]]))
        if who != self.staff:
            errors = {"FORBIDDEN"}
        elif order is None:
            errors = {"NOT_FOUND"}
        elif order.status != "PAID":
            errors = {"INVALID_STATE"}
        else:
            errors = set()
        payload = self.expect(who, SHIP, {"id": spelt}, errors)
        if payload is not None:
            assert order is not None and payload["order"]["status"] == "SHIPPED"
            order.status = "SHIPPED"
            for sku, quantity, _ in order.lines:
                self.move_stock(sku, on_hand=-quantity, reserved=-quantity)
            self.dash.shipped += 1

    @rule(data=st.data(), reason=st.sampled_from(["changed my mind", "  late ", "Zu spät"]))
    def cancel_order(self, data: st.DataObject, reason: str) -> None:
        order_id, spelt = self._order(data)
        order = self.orders.get(order_id)
        who = self._actor(data, order)
        if order is None:
            errors = {"NOT_FOUND"}
        elif who != self.staff and who != order.customer:
            errors = {"FORBIDDEN"}
        elif order.status not in HOLDING:
            errors = {"INVALID_STATE"}
        else:
            errors = set()
        payload = self.expect(who, CANCEL, {"id": spelt, "reason": reason}, errors)
        if payload is not None:
            assert order is not None and payload["order"]["status"] == "CANCELLED"
            assert payload["order"]["expiresAt"] is None
            self._cancelled(order)

    def _cancelled(self, order: ModelOrder) -> None:
        """Stock released, payment refunded, units no longer sold."""
        order.status = "CANCELLED"
        self.dash.revenue -= order.paid
        order.paid = Decimal("0.00")
        for sku, quantity, _ in order.lines:
            self.move_stock(sku, reserved=-quantity)
            self.units[sku] -= quantity
        self.dash.cancelled += 1

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        known = self.sku_of(0)
        some_order = next(iter(self.orders), str(uuid.uuid4()))
        who = self.customers[0]
        return [
            (who, PLACE, {"lines": [{"sku": text, "quantity": 1}]}),
            (who, PLACE, {"lines": [{"sku": known, "quantity": integer}]}),
            (who, PLACE, {"lines": [{"sku": known, "quantity": 1}], "key": text}),
            (who, PAY, {"id": text, "amount": "1.00"}),
            (who, PAY, {"id": some_order, "amount": number}),
            (self.staff, SHIP, {"id": text}),
            (who, CANCEL, {"id": text, "reason": "r"}),
            (self.staff, CANCEL, {"id": some_order, "reason": text if text.strip() else "\x00"}),
        ]

    def accept(self, query: str, variables: dict[str, Any], payload: dict[str, Any]) -> bool:
        """A valid idempotency key, or a printable reason to cancel."""
        if query == PLACE:
            key = variables.get("key")
            assert key and key.isascii() and key.isprintable() and " " not in key
            who = self.customers[0]
            if (who, key) in self.keys:
                assert payload["orderId"] == self.keys[(who, key)][2]
                return True
            lines = [(x["sku"], x["quantity"]) for x in variables["lines"]]
            self.placed(who, lines, payload)
            self.keys[(who, key)] = ("place", sorted(lines), payload["orderId"])
            return True
        if query == CANCEL:
            order = self.orders[variables["id"]]
            assert order.status in HOLDING
            self._cancelled(order)
            return True
        return False

    def check(self) -> None:
        """Reserved stock is the lines of PLACED and PAID orders; each order's status, payment
        and deadline; the dashboard's counts, revenue and units sold."""
        for sku, product in self.products.items():
            assert product.reserved == sum(
                q for o in self.orders.values() if o.status in HOLDING for s, q, _ in o.lines
                if s == sku
            ), sku  # fmt: skip
        orders = {
            r["order_id"]: r
            for r in self.s.db.fetch(
                "SELECT * FROM readmodel.orders WHERE order_id = any($1::text[])",
                list(self.orders),
            )
        }
        assert set(orders) == set(self.orders)
        for order_id, order in self.orders.items():
            row = orders[order_id]
            assert (row["status"], row["amount_paid"], row["total"], row["expires_at"]) == (
                order.status,
                order.paid,
                order.total,
                order.expires_at if order.status == "PLACED" else None,
            ), order_id
            assert row["customer_id"] == order.customer
        totals = self._dashboard_row()
        for column, expected in [
            ("orders_placed", self.dash.placed),
            ("orders_paid", self.dash.paid),
            ("orders_shipped", self.dash.shipped),
            ("orders_cancelled", self.dash.cancelled),
            ("orders_expired", self.dash.expired),
            ("revenue", self.dash.revenue),
        ]:
            assert totals[column] - self.base.get(column, 0) == expected, column
        assert self.dash.revenue == sum((o.paid for o in self.orders.values()), Decimal("0"))
        sold = {
            r["sku"]: r["units_sold"]
            for r in self.s.db.fetch(
                "SELECT sku, units_sold FROM readmodel.sales_products WHERE sku LIKE $1",
                self.prefix + "%",
            )
        }
        assert {s: u for s, u in sold.items()} == {s: u for s, u in self.units.items() if s in sold}
        assert all(u == 0 for s, u in self.units.items() if s not in sold)
        dashboard = self.ask("{ salesDashboard { ordersExpired } }", {})["salesDashboard"]
        assert dashboard["ordersExpired"] == totals["orders_expired"]
