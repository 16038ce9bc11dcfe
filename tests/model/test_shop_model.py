"""A model-based test of the whole service: Hypothesis drives random sequences of every
mutation against a running server, as several customers and staff, with order ids in every
spelling that parses and many that do not, hostile strings and numbers, and concurrent
duplicates under one idempotency key. A plain-Python model of the shop predicts each answer.

Time moves too. The server decides by the real clock, with its default payment window (30
minutes), so nothing expires by itself during a run. A step runs the order-expiry reaction
(the product's own `ReactionRunner(OrderExpiry())`, on the server's database) in this process
by a virtual clock, at an instant drawn against the deadlines of the PLACED orders: exactly on
one, a microsecond before one, between two, or hours past them all. It follows the log and
fires every timer due; the model expires the PLACED orders whose deadline is at or before
that instant, and only those. So expiries interleave with payments, cancels, shipments and
restocks; until its expiry the server (by the real clock, earlier) takes an order's payment.
The server's low-stock reaction runs (threshold 5) and the model predicts it: a flag once per
fall below the threshold, cleared when the stock is back to it.

After every step, once the server's reactions have followed the log and fired what is due: no
projection or reaction has stopped; every read model equals a fresh replay of the whole log
through the projections; the read models agree with the model (stock never negative, onHand -
reserved = available, reserved = the lines of PLACED and PAID orders, each order's status,
payments and deadline, the low-stock flags, the dashboard's counts, revenue and units); no
order was both paid and expired, none expired twice; an order-expiry timer exists exactly for
each PLACED order, due at its deadline; a rejected command appended nothing; an accepted one
appended its events exactly once.

CI runs a bounded number of examples with a fixed seed. For a long local run:

    EVENTGRAPH_MODEL_EXAMPLES=2000 EVENTGRAPH_MODEL_SEED=random \\
        uv run pytest tests/model -p no:cacheprovider -x
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from application.expiry import OrderExpiry
from application.reactions import ReactionRunner
from application.shop import Shop
from eventgraph.runtime import shop_upcasters
from eventstore.events import RecordedEvent
from eventstore.notify import CoalescingNotifier, Signal
from eventstore.store import EventStore, init_connection
from projections import all_projections
from projections.base import Projection
from tests.kit.documents import CANCEL, PAY, PLACE, REGISTER, RESTOCK, SHIP
from tests.kit.server import Server, start_server, stop_server, token

T = TypeVar("T")
EXAMPLES = int(os.environ.get("EVENTGRAPH_MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("EVENTGRAPH_MODEL_STEPS", "25"))
SEEDED = os.environ.get("EVENTGRAPH_MODEL_SEED", "fixed") != "random"
SHRINK = os.environ.get("EVENTGRAPH_MODEL_SHRINK", "1") == "1"
CENT = Decimal("0.01")
WINDOW = timedelta(seconds=1800)
"""The server's payment window: its default."""
LOW = 5
"""The server's low-stock threshold: its default."""
REACTIONS = ["order-expiry", "low-stock"]
UNPAID = ("PLACED", "EXPIRED")

SPELLINGS: list[Callable[[str], str]] = [
    lambda u: u,
    str.upper,
    lambda u: "{" + u + "}",
    lambda u: u.replace("-", ""),
    lambda u: "URN:UUID:" + u.replace("-", "").upper(),
]
HOSTILE_STRINGS = [
    "\x00", "a\x00b", "\x01", "\x1b[31m", "\x7f", "\x85", "\u202e", "\ud800", "\udfff",
    "\u0661\u0662", "1_0", "\u0661\u0660\u0660", "9" * 400, "", " ", "\t", "💥" * 60, "a" * 10_000,
    "' OR 1=1 --", "$1", "{}", "[]", "null",
]  # fmt: skip
HOSTILE_NUMBERS = ["1e400", "-1", "0", "0.001", "1_000", "\u0661", "NaN", "Infinity", "9" * 5000]
HOSTILE_INTS = [-1, 0, 10_001, 2**31, 2**63, -(2**63), 10**30]
TOLERATED = {
    "BAD_USER_INPUT", "BAD_REQUEST", "NOT_FOUND", "FORBIDDEN", "INVALID_STATE", "CONFLICT",
    "ALREADY_EXISTS", "INSUFFICIENT_STOCK",
}  # fmt: skip


class VirtualClock:
    """The time this process's order-expiry runner (and the expiries it commands) decide by:
    held at one instant while it runs, so that a deadline is met exactly."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Db:
    """Direct reads of the server's database, and the order-expiry reaction on a virtual clock,
    from a loop of their own in a thread (Hypothesis rules are synchronous)."""

    def __init__(self, url: str, read_url: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def connect(to: str) -> asyncpg.Pool:
            pool = await asyncpg.create_pool(to, min_size=1, max_size=4, init=init_connection)
            assert pool is not None
            return pool

        self.log: asyncpg.Pool = self.run(connect(url))
        """The event log's database."""
        self.pool: asyncpg.Pool = self.run(connect(read_url)) if read_url else self.log
        """The read side's (the same unless the server runs with a read database)."""
        self.store = EventStore(self.log, shop_upcasters())
        self._events: list[RecordedEvent] = []
        self._replayed_to = 0
        self._scratch = False
        self.clock = VirtualClock()
        self.run(self._start_expiry(url))

    async def _start_expiry(self, url: str) -> None:
        """The product's order-expiry runner over the server's database, commanding through a
        Shop of its own; its appends wake the server's projectors as the server's own do."""
        signal = Signal()
        self._notifier = CoalescingNotifier(self.log, signal)
        self._notifier.start()
        store = EventStore(self.log, shop_upcasters(), self._notifier)
        shop = Shop(store, self.clock)
        self.expiry = ReactionRunner(OrderExpiry(), url, store, shop, signal, clock=self.clock)
        self._expiry_conn: asyncpg.Connection = await asyncpg.connect(url)
        await init_connection(self._expiry_conn)

    def expire_due(self, at: datetime | None) -> int:
        """Run order expiry at `at` (None: at the latest deadline pending): follow the log to
        its head, then fire every timer due. How many timers fired."""
        return self.run(self._expire_due(at))

    async def _expire_due(self, at: datetime | None) -> int:
        conn = self._expiry_conn
        head = await conn.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            while await self.expiry.step(conn):
                pass
            seen = await conn.fetchval(
                "SELECT position FROM eventgraph.reactions WHERE name = $1", self.expiry.name
            )
            if seen >= head:  # (a transaction still open elsewhere can hold the log back)
                break
            assert asyncio.get_running_loop().time() < deadline, "expiry never reached the head"
            await asyncio.sleep(0.01)
        if at is None:
            at = await conn.fetchval(
                "SELECT max(due_at) FROM eventgraph.timers WHERE reaction = $1", self.expiry.name
            )
            if at is None:
                return 0
        self.clock.now = at
        fired = 0
        while count := await self.expiry.fire_due(conn):
            fired += count
        return fired

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    def close(self) -> None:
        if self._scratch:
            self.run(self.pool.execute("DROP SCHEMA model_replay CASCADE"))
        self.run(self._expiry_conn.close())
        self.run(self._notifier.stop())
        self.run(self.pool.close())
        if self.log is not self.pool:
            self.run(self.log.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.run(self.pool.fetch(sql, *args))]

    def head_count(self) -> int:
        """The events in the log, but those the server's low-stock reaction appends by itself
        (a moment after the command that took the stock down, so maybe during a step)."""
        return int(
            self.run(
                self.log.fetchval(
                    "SELECT count(*) FROM eventgraph.events WHERE type <> 'LowStockReached'"
                )
            )
        )

    def log_fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.run(self.log.fetch(sql, *args))]

    def replay_matches(self) -> list[str]:
        """Replay the whole log through every projection into empty tables; the names of
        the tables whose rows differ from the live read model."""
        return self.run(self._replay_differences())

    async def _replay_differences(self) -> list[str]:
        # The log only grows (and is read in commit-safe order): read what is new since the
        # last step. The scratch tables are made once, as a rebuild makes a generation; each
        # replay fills them inside a transaction that is rolled back, so they are empty again
        # for the next (DDL at every step would cost more than the rest of the step).
        while batch := await self.store.read_all(self._replayed_to, 5_000):
            self._events.extend(batch)
            self._replayed_to = batch[-1].position
        differing = []
        projection: Projection
        conn: asyncpg.Connection
        async with self.pool.acquire() as conn:
            if not self._scratch:
                await conn.execute("DROP SCHEMA IF EXISTS model_replay CASCADE")
                await conn.execute("CREATE SCHEMA model_replay")
                for projection in all_projections():
                    await conn.execute(projection.create_tables("model_replay"))
                    await conn.execute(projection.create_indexes("model_replay"))
                self._scratch = True
            replay = conn.transaction()
            await replay.start()
            try:
                for projection in all_projections():
                    await projection.apply(conn, "model_replay", self._events)
                    for view in projection.views:
                        query = "SELECT * FROM {}.{} ORDER BY 1"
                        live = [dict(r) for r in await conn.fetch(query.format("readmodel", view))]
                        fresh = [
                            dict(r) for r in await conn.fetch(query.format("model_replay", view))
                        ]
                        if live != fresh:
                            differing.append(view)
            finally:
                await replay.rollback()
        return differing


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


@dataclass
class Dashboard:
    placed: int = 0
    paid: int = 0
    shipped: int = 0
    cancelled: int = 0
    expired: int = 0
    revenue: Decimal = Decimal("0.00")


@dataclass
class Shared:
    server: Server
    db: Db
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, sub: str, role: str) -> dict[str, str]:
        if sub not in self.tokens:
            self.tokens[sub] = token(sub, role)
        return {"Authorization": f"Bearer {self.tokens[sub]}"}


SHARED: Shared | None = None


class ShopMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        assert SHARED is not None
        self.s = SHARED
        run = uuid.uuid4().hex[:6]
        self.prefix = f"M{run}-"
        self.customers = [f"ann-{run}", f"Zoë Ünal {run}", f"bob smith-{run}"]
        self.staff = f"staff-{run}"
        self.products: dict[str, ModelProduct] = {}
        self.orders: dict[str, ModelOrder] = {}
        self.keys: dict[tuple[str, str], tuple[str, Any, str]] = {}
        self.dash = Dashboard()
        self.units: dict[str, int] = {}
        # Earlier examples' orders still wait for their deadlines: expire them now, so that
        # this example's clock moves only its own.
        self.s.db.expire_due(None)
        settled(self.s)
        caught_up(self.s)
        self.base = self._dashboard_row()

    # Transport ---------------------------------------------------------------------------

    def call(self, who: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        role = "staff" if who == self.staff else "customer"
        response = self.s.http.post(
            self.s.server.url + "/graphql",
            # ASCII JSON, so that a lone surrogate travels as the escape a client would send
            content=json.dumps({"query": query, "variables": variables}).encode(),
            headers={**self.s.bearer(who, role), "Content-Type": "application/json"},
        )
        assert response.status_code in (200, 400), response.text
        body: dict[str, Any] = response.json()
        return body

    def expect(
        self,
        who: str,
        query: str,
        variables: dict[str, Any],
        errors: set[str],
        *,
        replay: bool = False,
    ) -> dict[str, Any] | None:
        """Send a command; check that it failed with one of `errors` (and appended nothing)
        or, if `errors` is empty, that it succeeded and appended its events once."""
        before = self.s.db.head_count()
        body = self.call(who, query, variables)
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        after = self.s.db.head_count()
        if errors:
            assert codes and codes <= errors, (variables, errors, body)
            assert after == before, f"a rejected command appended {after - before} events"
            return None
        assert not codes, (variables, body)
        payload: dict[str, Any] = next(iter(body["data"].values()))
        ids = [e["eventId"] for e in payload["events"]]
        assert after - before == (0 if replay else len(ids)), "appended once (a replay: never)"
        found = self.s.db.run(
            self.s.db.log.fetchval(
                "SELECT count(*) FROM eventgraph.events WHERE event_id = any($1::uuid[])", ids
            )
        )
        assert found == len(ids), "each of the command's events is in the log, once"
        return payload

    def _dashboard_row(self) -> dict[str, Any]:
        rows = self.s.db.fetch("SELECT * FROM readmodel.sales_totals")
        return rows[0] if rows else {}

    def _move(self, sku: str, on_hand: int = 0, reserved: int = 0) -> None:
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

    # Rules -------------------------------------------------------------------------------

    @initialize(n=st.integers(1, 3), opening=st.integers(0, 6))
    def catalogue(self, n: int, opening: int) -> None:
        """n products, and an order of `opening` of the first (0: none), so that most
        examples have a deadline to move the clock against."""
        for i in range(n):
            self.register(i, "1.25", 10)  # a few orders take it below LOW, or sell it out
        if opening:
            who, lines = self.customers[0], [(f"{self.prefix}0", opening)]
            variables = {"lines": [{"sku": s, "quantity": q} for s, q in lines], "key": None}
            payload = self.expect(who, PLACE, variables, set())
            assert payload is not None
            self._placed(who, lines, payload)

    def register(self, index: int, price: str, stock: int) -> None:
        sku = f"{self.prefix}{index}"
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
        sku = f"{self.prefix}{index}"
        who = self.staff if as_staff else self.customers[0]
        errors = {"FORBIDDEN"} if not as_staff else set()
        if as_staff and sku not in self.products:
            errors = {"NOT_FOUND"}
        payload = self.expect(who, RESTOCK, {"sku": sku, "q": quantity}, errors)
        if payload is not None:
            self._move(sku, on_hand=quantity)
            assert payload["product"]["onHand"] == self.products[sku].on_hand

    def _lines(self, data: st.DataObject) -> list[tuple[str, int]]:
        """Mostly products that exist (so that orders are placed, paid and left to expire),
        sometimes any of 0-6."""
        known = [i for i in range(7) if f"{self.prefix}{i}" in self.products]
        indices = st.integers(0, 6)
        if known and data.draw(st.integers(0, 3), label="known") > 0:
            indices = st.sampled_from(known)
        skus = data.draw(st.lists(indices, min_size=1, max_size=3, unique=True), label="skus")
        return [(f"{self.prefix}{i}", data.draw(st.integers(1, 6), label="qty")) for i in skus]

    def _place_outcome(self, who: str, lines: list[tuple[str, int]], key: str | None) -> set[str]:
        if key is not None and (who, key) in self.keys:
            command, args, _ = self.keys[(who, key)]
            return set() if (command, args) == ("place", sorted(lines)) else {"CONFLICT"}
        if any(sku not in self.products for sku, _ in lines):
            return {"NOT_FOUND"}
        if any(q > self.products[s].on_hand - self.products[s].reserved for s, q in lines):
            return {"INSUFFICIENT_STOCK"}
        return set()

    def _placed(self, who: str, lines: list[tuple[str, int]], payload: dict[str, Any]) -> None:
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
            self._move(sku, reserved=quantity)
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
        self._placed(who, lines, payload)
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
        self._placed(who, lines, payload)
        self.keys[(who, key)] = ("place", sorted(lines), payload["orderId"])

    def _order(self, data: st.DataObject) -> tuple[str, str]:
        """(canonical id, the spelling sent) of a known order, or of an unknown one."""
        known = list(self.orders)  # in the order placed: the same in every run
        ids: st.SearchStrategy[str] = st.uuids().map(str)
        if known and data.draw(st.booleans()):
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
                self._move(sku, on_hand=-quantity, reserved=-quantity)
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
        elif order.status not in ("PLACED", "PAID"):
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
            self._move(sku, reserved=-quantity)
            self.units[sku] -= quantity
        self.dash.cancelled += 1

    @rule(
        past=st.integers(0, 8),
        where=st.sampled_from(["on a deadline", "just before a deadline", "between"]),
        seconds=st.integers(1, 86_400),
    )
    def advance_the_clock(self, past: int, where: str, seconds: int) -> None:
        """Order expiry runs at an instant after the `past` soonest deadlines of the PLACED
        orders (as many as there are, if fewer): exactly on the next one, a microsecond before
        it, or between it and the one before (seconds to a day before the first, or after
        the last). Every PLACED order whose deadline is then or earlier expires (its stock
        comes back, its units are not sold), the others do not.

        The instants are drawn against the orders' own deadlines (which the server set by the
        real clock), never against the time it is now, so that which orders expire is the
        same in every run of an example (Hypothesis replays and shrinks them). They need not
        increase: each is where this process's order-expiry runner stands while it runs."""
        deadlines = sorted(o.expires_at for o in self.orders.values() if o.status == "PLACED")
        gap = timedelta(seconds=seconds)
        if not deadlines:
            at = datetime.now(UTC) + gap
        elif where == "on a deadline":
            at = deadlines[min(past, len(deadlines) - 1)]
        elif where == "just before a deadline":
            at = deadlines[min(past, len(deadlines) - 1)] - timedelta(microseconds=1)
        elif past == 0:
            at = deadlines[0] - gap
        elif past >= len(deadlines):
            at = deadlines[-1] + gap
        else:
            at = deadlines[past - 1] + (deadlines[past] - deadlines[past - 1]) / 2
        fired = self.s.db.expire_due(at)
        due = [o for o in self.orders.values() if o.status == "PLACED" and o.expires_at <= at]
        assert fired == len(due), f"{fired} timers fired for {len(due)} orders due"
        for order in due:
            order.status = "EXPIRED"
            for sku, quantity, _ in order.lines:
                self._move(sku, reserved=-quantity)
                self.units[sku] -= quantity
            self.dash.expired += 1

    @rule(
        data=st.data(),
        text=st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=30)),
        number=st.sampled_from(HOSTILE_NUMBERS),
        integer=st.sampled_from(HOSTILE_INTS),
    )
    def hostile(self, data: st.DataObject, text: str, number: str, integer: int) -> None:
        """A hostile value in one argument of one mutation: a clean refusal, nothing stored."""
        known = f"{self.prefix}0"
        some_order = next(iter(self.orders), str(uuid.uuid4()))
        cases: list[tuple[str, str, dict[str, Any]]] = [
            (self.staff, REGISTER, {"sku": self.prefix + text, "name": "n", "price": "1.00",
                                    "stock": 1}),
            (self.staff, REGISTER, {"sku": f"{self.prefix}h", "name": text or "\x00",
                                    "price": "1.00", "stock": 1}),
            (self.staff, REGISTER, {"sku": f"{self.prefix}h", "name": "n", "price": number,
                                    "stock": 1}),
            (self.staff, REGISTER, {"sku": f"{self.prefix}h", "name": "n", "price": "1.00",
                                    "stock": integer}),
            (self.staff, RESTOCK, {"sku": known, "q": integer}),
            (self.customers[0], PLACE, {"lines": [{"sku": text, "quantity": 1}]}),
            (self.customers[0], PLACE, {"lines": [{"sku": known, "quantity": integer}]}),
            (self.customers[0], PLACE, {"lines": [{"sku": known, "quantity": 1}], "key": text}),
            (self.customers[0], PAY, {"id": text, "amount": "1.00"}),
            (self.customers[0], PAY, {"id": some_order, "amount": number}),
            (self.staff, SHIP, {"id": text}),
            (self.customers[0], CANCEL, {"id": text, "reason": "r"}),
            (self.staff, CANCEL, {"id": some_order, "reason": text if text.strip() else "\x00"}),
        ]  # fmt: skip
        who, query, variables = data.draw(st.sampled_from(cases))
        before = self.s.db.head_count()
        body = self.call(who, query, variables)
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        if not codes:  # a value that is odd but valid (a unicode sku name, a long key...)
            self._accept_unexpected_success(query, variables, body)
            return
        assert codes <= TOLERATED, (variables, body)
        assert "INTERNAL" not in str(body) and "byte sequence" not in str(body)
        assert self.s.db.head_count() == before

    def _accept_unexpected_success(
        self, query: str, variables: dict[str, Any], body: dict[str, Any]
    ) -> None:
        """Only a value that is odd but valid (a printable name or sku, a valid key, a stock
        of 0, a printable reason) makes a hostile case succeed: keep the model in step."""
        payload = next(iter(body["data"].values()))
        if query == PLACE:
            key = variables.get("key")
            assert key and key.isascii() and key.isprintable() and " " not in key
            who = self.customers[0]
            if (who, key) in self.keys:
                assert payload["orderId"] == self.keys[(who, key)][2]
                return
            lines = [(x["sku"], x["quantity"]) for x in variables["lines"]]
            self._placed(who, lines, payload)
            self.keys[(who, key)] = ("place", sorted(lines), payload["orderId"])
        elif query == CANCEL:
            order = self.orders[variables["id"]]
            assert order.status in ("PLACED", "PAID")
            self._cancelled(order)
        elif query == REGISTER:
            assert variables["sku"] not in self.products
            product = payload["product"]
            self.products[variables["sku"]] = ModelProduct(
                Decimal(product["unitPrice"]), product["onHand"]
            )
            assert product["onHand"] == variables["stock"]
        else:
            raise AssertionError(f"a hostile value was accepted: {variables}")

    # Invariants ----------------------------------------------------------------------------

    @invariant()
    def read_side_is_whole_and_agrees_with_the_model(self) -> None:
        settled(self.s)
        ready = caught_up(self.s)
        for name, projection in ready["projections"].items():
            assert projection["status"] == "running", (name, projection["error"])
        assert self.s.db.replay_matches() == [], "a read model differs from a fresh replay"

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
            assert product.reserved == sum(
                q
                for o in self.orders.values()
                if o.status in ("PLACED", "PAID")
                for s, q, _ in o.lines
                if s == sku
            ), sku
            assert (row["on_hand"], row["reserved"]) == (product.on_hand, product.reserved), sku
            assert (row["low_below"], row["low_since"] is not None) == (
                LOW if product.low else None,
                product.low,
            ), sku
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
        self._deadlines_and_flags_happened_once_and_only_where_due()
        self._the_api_agrees(totals)

    def _deadlines_and_flags_happened_once_and_only_where_due(self) -> None:
        """In the log: no order both paid and expired, none expired twice, an expiry for each
        order the model expired; a low-stock flag per predicted fall. In the timers: one for
        each PLACED order, due at its deadline, and none for any other."""
        streams = [f"order-{o}" for o in self.orders] + [f"product-{p}" for p in self.products]
        counts: dict[tuple[str, str], int] = {
            (r["stream_id"], r["type"]): r["n"]
            for r in self.s.db.log_fetch(
                "SELECT stream_id, type, count(*) AS n FROM eventgraph.events"
                " WHERE stream_id = any($1::text[])"
                " AND type IN ('PaymentProcessed', 'OrderExpired', 'LowStockReached')"
                " GROUP BY stream_id, type",
                streams,
            )
        }
        for order_id, order in self.orders.items():
            paid = counts.get((f"order-{order_id}", "PaymentProcessed"), 0)
            expired = counts.get((f"order-{order_id}", "OrderExpired"), 0)
            assert not (paid and expired), f"{order_id} was paid and expired"
            assert expired == (1 if order.status == "EXPIRED" else 0), order_id
        for sku, product in self.products.items():
            flags = counts.get((f"product-{sku}", "LowStockReached"), 0)
            assert flags == product.flags, f"{sku} flagged {flags} times, not {product.flags}"
        timers = {
            r["key"]: r["due_at"]
            for r in self.s.db.log_fetch(
                "SELECT key, due_at FROM eventgraph.timers"
                " WHERE reaction = 'order-expiry' AND key = any($1::text[])",
                list(self.orders),
            )
        }
        assert timers == {
            order_id: order.expires_at
            for order_id, order in self.orders.items()
            if order.status == "PLACED"
        }

    def _the_api_agrees(self, totals: dict[str, Any]) -> None:
        """The dashboard's ordersExpired and each product's lowOnStock, through GraphQL."""
        skus = sorted(self.products)[:25]  # (the alias cap is 30)
        variables = {f"s{i}": sku for i, sku in enumerate(skus)}
        fields = "".join(
            f" p{i}: product(sku: $s{i}) {{ lowOnStock lowOnStockSince }}" for i in range(len(skus))
        )
        declared = "(" + ", ".join(f"${v}: String!" for v in variables) + ")" if skus else ""
        query = f"query{declared} {{ salesDashboard {{ ordersExpired }}{fields} }}"
        body = self.call(self.staff, query, variables)
        assert not body.get("errors"), body
        data = body["data"]
        assert data["salesDashboard"]["ordersExpired"] == totals["orders_expired"]
        for i, sku in enumerate(skus):
            view = data[f"p{i}"]
            low = self.products[sku].low
            assert (view["lowOnStock"], view["lowOnStockSince"] is not None) == (low, low), sku


def settled(shared: Shared, seconds: float = 30) -> None:
    """Once the server's reactions have followed the whole log and fired every timer that is
    due by the real clock (the low-stock flags; no deadline is due in real time)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        rows = shared.db.log_fetch(
            """
            SELECT r.name, r.status, r.error, r.position,
                   (SELECT coalesce(max(position), 0) FROM eventgraph.events) AS head,
                   (SELECT count(*) FROM eventgraph.timers WHERE due_at <= now()) AS due
              FROM eventgraph.reactions r WHERE r.name = any($1::text[])
            """,
            REACTIONS,
        )
        for row in rows:
            assert row["status"] == "running", (row["name"], row["error"])
        if (
            len(rows) == len(REACTIONS)
            and all(r["position"] >= r["head"] for r in rows)
            and rows[0]["due"] == 0
        ):
            return
        assert time.monotonic() < deadline, f"the reactions did not settle: {rows}"
        time.sleep(0.01)


def caught_up(shared: Shared, seconds: float = 30) -> dict[str, Any]:
    """/readyz once every projection has applied the whole log (or has stopped)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        report: dict[str, Any] = shared.http.get(shared.server.url + "/readyz").json()
        projections = report["projections"].values()
        if any(p["status"] != "running" for p in projections) or all(
            p["checkpoint"] >= report["head"] for p in projections
        ):
            head = shared.db.run(
                shared.db.log.fetchval("SELECT coalesce(max(position), 0) FROM eventgraph.events")
            )
            if report["head"] >= head or time.monotonic() > deadline:
                return report
        assert time.monotonic() < deadline, f"the read side did not catch up: {report}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def shared(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    global SHARED
    from tests.kit.database import fresh_database

    context = fresh_database(server_url)
    loop = asyncio.new_event_loop()
    url = loop.run_until_complete(context.__aenter__())
    server = start_server(
        url,
        Path(tmp_path_factory.mktemp("model")),
        EVENTGRAPH_PAYMENT_WINDOW_SECONDS=str(WINDOW.seconds),
        EVENTGRAPH_LOW_STOCK_THRESHOLD=str(LOW),
    )
    db = Db(url, server.read_url)
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=16)) as http:
        SHARED = Shared(server, db, http)
        try:
            yield SHARED
        finally:
            SHARED = None
            db.close()
            stop_server(server)
            loop.run_until_complete(context.__aexit__(None, None, None))
            loop.close()
    errors = [line for line in server.log.read_text().splitlines() if " ERROR " in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:20])


def test_the_shop_against_its_model(shared: Shared) -> None:
    run_state_machine_as_test(
        ShopMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=SEEDED,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
            phases=list(Phase) if SHRINK else [Phase.explicit, Phase.generate],
        ),
    )
