"""Order deadlines in the model: time moves. The server decides by the real clock, with its
default payment window (30 minutes), so nothing expires by itself during a run. A step runs
the order-expiry reaction (the product's own `ReactionRunner(OrderExpiry())`, on the server's
database, tests/model/db.py) in this process by a virtual clock, at an instant drawn against
the deadlines of the PLACED orders: exactly on one, a microsecond before one, between two, or
hours past them all. It follows the log and fires every timer due; the model expires the
PLACED orders whose deadline is at or before that instant, and only those. So expiries
interleave with payments, cancels, shipments and restocks; until its expiry the server (by
the real clock, earlier) takes an order's payment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st
from hypothesis.stateful import rule

from tests.model.features.orders import Orders


class Deadlines(Orders):
    def start(self) -> None:
        # Earlier examples' orders still wait for their deadlines: expire them now, so that
        # this example's clock moves only its own.
        self.s.db.expire_due(None)

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
                self.move_stock(sku, reserved=-quantity)
                self.units[sku] -= quantity
            self.dash.expired += 1

    def check(self) -> None:
        """In the log: no order both paid and expired, none expired twice, an expiry for each
        order the model expired. In the timers: one for each PLACED order, due at its
        deadline, and none for any other."""
        counts: dict[tuple[str, str], int] = {
            (r["stream_id"], r["type"]): r["n"]
            for r in self.s.db.log_fetch(
                "SELECT stream_id, type, count(*) AS n FROM eventgraph.events"
                " WHERE stream_id = any($1::text[])"
                " AND type IN ('PaymentProcessed', 'OrderExpired')"
                " GROUP BY stream_id, type",
                [f"order-{o}" for o in self.orders],
            )
        }
        for order_id, order in self.orders.items():
            paid = counts.get((f"order-{order_id}", "PaymentProcessed"), 0)
            expired = counts.get((f"order-{order_id}", "OrderExpired"), 0)
            assert not (paid and expired), f"{order_id} was paid and expired"
            assert expired == (1 if order.status == "EXPIRED" else 0), order_id
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
