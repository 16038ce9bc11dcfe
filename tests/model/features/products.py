"""Products in the model: registered and restocked (by staff; a customer is refused), and the
stock every other feature moves. The server's low-stock reaction runs (threshold LOW) and the
model predicts it: a flag once per fall below the threshold, cleared when the stock is back
to it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.kit.documents import REGISTER, RESTOCK
from tests.model.machine import LOW, Case, ShopModel

CENT = Decimal("0.01")


@dataclass
class ModelProduct:
    price: Decimal
    on_hand: int
    reserved: int = 0
    low: bool = False
    """Flagged low on stock (LowStockReached) since it last fell below LOW."""
    flags: int = 0
    """How many times it was flagged (once per fall below LOW)."""

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Products(ShopModel):
    def start(self) -> None:
        self.products: dict[str, ModelProduct] = {}

    def opening(self, data: st.DataObject) -> None:
        """1 to 3 products, of 10 each: a few orders take one below LOW, or sell it out."""
        for i in range(data.draw(st.integers(1, 3), label="products")):
            self.register(i, "1.25", 10)

    def sku_of(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def some_sku(self, data: st.DataObject) -> str:
        """Mostly a product that exists, sometimes any of 0-6."""
        known = [i for i in range(7) if self.sku_of(i) in self.products]
        indices = st.integers(0, 6)
        if known and data.draw(st.integers(0, 3), label="known") > 0:
            indices = st.sampled_from(known)
        return self.sku_of(data.draw(indices, label="product"))

    def move_stock(self, sku: str, on_hand: int = 0, reserved: int = 0) -> None:
        """A stock move, as the product and the server's low-stock reaction take it: back to
        LOW or more clears the flag; a fall from LOW or more to below it sets it, once."""
        product = self.products[sku]
        before = product.available
        product.on_hand += on_hand
        product.reserved += reserved
        if product.low and product.available >= LOW:
            product.low = False
        if product.available < LOW <= before:
            product.low, product.flags = True, product.flags + 1

    def register(self, index: int, price: str, stock: int) -> None:
        sku = self.sku_of(index)
        errors = {"ALREADY_EXISTS"} if sku in self.products else set()
        variables = {"sku": sku, "name": f"Product {index}", "price": price, "stock": stock}
        payload = self.expect(self.staff, REGISTER, variables, errors)
        if payload is not None:
            self.products[sku] = ModelProduct(Decimal(price).quantize(CENT), stock)
            assert payload["product"]["onHand"] == stock

    @rule(index=st.integers(0, 5), cents=st.integers(1, 5000), stock=st.integers(0, 30))
    def register_product(self, index: int, cents: int, stock: int) -> None:
        self.register(index, str(Decimal(cents) / 100), stock)

    @rule(index=st.integers(0, 6), quantity=st.integers(1, 20), as_staff=st.booleans())
    def restock_product(self, index: int, quantity: int, as_staff: bool) -> None:
        sku = self.sku_of(index)
        who = self.staff if as_staff else self.customers[0]
        errors = {"FORBIDDEN"} if not as_staff else set()
        if as_staff and sku not in self.products:
            errors = {"NOT_FOUND"}
        payload = self.expect(who, RESTOCK, {"sku": sku, "q": quantity}, errors)
        if payload is not None:
            self.move_stock(sku, on_hand=quantity)
            assert payload["product"]["onHand"] == self.products[sku].on_hand

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        new, known = f"{self.prefix}h", self.sku_of(0)
        return [
            (self.staff, REGISTER, {"sku": self.prefix + text, "name": "n", "price": "1.00",
                                    "stock": 1}),
            (self.staff, REGISTER, {"sku": new, "name": text or "\x00", "price": "1.00",
                                    "stock": 1}),
            (self.staff, REGISTER, {"sku": new, "name": "n", "price": number, "stock": 1}),
            (self.staff, REGISTER, {"sku": new, "name": "n", "price": "1.00", "stock": integer}),
            (self.staff, RESTOCK, {"sku": known, "q": integer}),
        ]  # fmt: skip

    def accept(self, query: str, variables: dict[str, Any], payload: dict[str, Any]) -> bool:
        """A printable sku or name, or a stock of 0."""
        if query != REGISTER:
            return False
        assert variables["sku"] not in self.products
        product = payload["product"]
        self.products[variables["sku"]] = ModelProduct(
            Decimal(product["unitPrice"]), product["onHand"]
        )
        assert product["onHand"] == variables["stock"]
        return True

    def check(self) -> None:
        """Each product's stock and low-stock flag, in the read model, the log and the API."""
        rows = {
            r["sku"]: r
            for r in self.s.db.fetch(
                "SELECT * FROM readmodel.products WHERE sku LIKE $1", self.prefix + "%"
            )
        }
        assert set(rows) == set(self.products)
        for sku, product in self.products.items():
            row = rows[sku]
            assert 0 <= product.reserved <= product.on_hand
            assert (row["on_hand"], row["reserved"]) == (product.on_hand, product.reserved), sku
            assert (row["low_below"], row["low_since"] is not None) == (
                LOW if product.low else None,
                product.low,
            ), sku
        flags = {
            r["stream_id"]: r["n"]
            for r in self.s.db.log_fetch(
                "SELECT stream_id, count(*) AS n FROM eventgraph.events"
                " WHERE stream_id = any($1::text[]) AND type = 'LowStockReached'"
                " GROUP BY stream_id",
                [f"product-{sku}" for sku in self.products],
            )
        }
        for sku, product in self.products.items():
            found = flags.get(f"product-{sku}", 0)
            assert found == product.flags, f"{sku} flagged {found} times, not {product.flags}"
        self._the_api_shows_the_flags()

    def _the_api_shows_the_flags(self) -> None:
        """Each product's lowOnStock, through GraphQL."""
        skus = sorted(self.products)[:25]  # (the alias cap is 30)
        if not skus:
            return
        variables = {f"s{i}": sku for i, sku in enumerate(skus)}
        fields = "".join(
            f" p{i}: product(sku: $s{i}) {{ lowOnStock lowOnStockSince }}" for i in range(len(skus))
        )
        declared = ", ".join(f"${v}: String!" for v in variables)
        data = self.ask(f"query({declared}) {{{fields} }}", variables)
        for i, sku in enumerate(skus):
            view = data[f"p{i}"]
            low = self.products[sku].low
            assert (view["lowOnStock"], view["lowOnStockSince"] is not None) == (low, low), sku
