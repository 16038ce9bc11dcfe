"""Wishlists in the model: a customer wishes products that exist, each once (at most 50), and
removes them; staff are refused. The wishlist read model holds each customer's list in the
order added and each product's wishes; `myWishlist` shows each wished product's current stock
(a view joined to the products read model)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from tests.model.features.products import Products
from tests.model.machine import Case

MAX_ITEMS = 50
ITEMS = "items { sku available }"
ADD = f"""mutation($sku: String!) {{ addToWishlist(sku: $sku) {{
  position events {{ eventId }} wishlist {{ customerId position {ITEMS} }} }} }}"""
REMOVE = f"""mutation($sku: String!) {{ removeFromWishlist(sku: $sku) {{
  position events {{ eventId }} wishlist {{ customerId position {ITEMS} }} }} }}"""
MINE = f"{{ myWishlist {{ customerId {ITEMS} }} }}"


class Wishlists(Products):
    def start(self) -> None:
        self.wishlists: dict[str, list[str]] = {}
        """Each customer's wished skus, in the order added."""

    def _wish_outcome(self, who: str, sku: str, adding: bool) -> set[str]:
        if who == self.staff:
            return {"FORBIDDEN"}
        items = self.wishlists.get(who, [])
        if not adding:
            return set() if sku in items else {"NOT_FOUND"}
        if sku in items:
            return {"ALREADY_EXISTS"}
        if len(items) >= MAX_ITEMS:
            return {"BAD_USER_INPUT"}
        return set() if sku in self.products else {"NOT_FOUND"}

    def _wished(self, who: str, payload: dict[str, Any]) -> None:
        seen = payload["wishlist"]  # as of the command's position: read your own write
        assert seen["customerId"] == who and seen["position"] >= payload["position"]
        assert [i["sku"] for i in seen["items"]] == self.wishlists.get(who, [])

    @rule(data=st.data())
    def add_to_wishlist(self, data: st.DataObject) -> None:
        who = data.draw(st.sampled_from([*self.customers, self.staff]), label="wisher")
        sku = self.some_sku(data)
        payload = self.expect(who, ADD, {"sku": sku}, self._wish_outcome(who, sku, True))
        if payload is not None:
            self.wishlists.setdefault(who, []).append(sku)
            self._wished(who, payload)

    @rule(data=st.data())
    def remove_from_wishlist(self, data: st.DataObject) -> None:
        """Mostly a product on the customer's list, sometimes one that is not."""
        who = data.draw(st.sampled_from([*self.customers, self.staff]), label="wisher")
        items = self.wishlists.get(who, [])
        on_the_list = data.draw(st.booleans(), label="on the list") if items else False
        if on_the_list:
            sku = data.draw(st.sampled_from(items), label="wished")
        else:
            sku = self.some_sku(data)
        payload = self.expect(who, REMOVE, {"sku": sku}, self._wish_outcome(who, sku, False))
        if payload is not None:
            items.remove(sku)
            self._wished(who, payload)

    @precondition(lambda self: any(self.wishlists.values()))
    @rule(data=st.data())
    def wish_again(self, data: st.DataObject) -> None:
        """A product already on the list: refused, the list unchanged."""
        who = data.draw(st.sampled_from(sorted(w for w, s in self.wishlists.items() if s)))
        sku = data.draw(st.sampled_from(self.wishlists[who]), label="wished")
        self.expect(who, ADD, {"sku": sku}, {"ALREADY_EXISTS"})

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        who = self.customers[2]
        return [(who, ADD, {"sku": text}), (who, REMOVE, {"sku": text})]

    def check(self) -> None:
        """Each list in the read model, in order; each product's wishes; and each customer's
        `myWishlist` with every wished product's stock as the products model has it."""
        rows = self.s.db.fetch(
            "SELECT customer_id, sku FROM readmodel.wishlist_items"
            " WHERE customer_id = any($1::text[]) ORDER BY added",
            self.customers,
        )
        lists: dict[str, list[str]] = {}
        for row in rows:
            lists.setdefault(row["customer_id"], []).append(row["sku"])
        assert lists == {who: items for who, items in self.wishlists.items() if items}
        wishes = {
            r["sku"]: r["wishes"]
            for r in self.s.db.fetch(
                "SELECT sku, wishes FROM readmodel.product_wishes WHERE sku LIKE $1 AND wishes > 0",
                self.prefix + "%",
            )
        }
        counted: dict[str, int] = {}
        for items in self.wishlists.values():
            for sku in items:
                counted[sku] = counted.get(sku, 0) + 1
        assert wishes == counted
        for who in self.customers:
            body = self.call(who, MINE, {})
            assert not body.get("errors"), body
            mine = body["data"]["myWishlist"]
            expected = [
                {"sku": sku, "available": self.products[sku].available}
                for sku in self.wishlists.get(who, [])
            ]
            assert mine == {"customerId": who, "items": expected}, who
