"""A model-based test of the whole service: Hypothesis drives random sequences of every
mutation against a running server, as several customers and staff, with order ids in every
spelling that parses and many that do not, hostile strings and numbers, and concurrent
duplicates under one idempotency key. A plain-Python model of the shop predicts each answer,
and time moves (tests/model/features/deadlines.py).

Each feature contributes its part from a module of its own in tests/model/features/: its
model, the commands it generates, its hostile values and its checks (products, orders, order
deadlines, reviews). tests/model/machine.py holds what they share: the server, sending a
command, the hostile step and the checks every feature gets.

After every step, once the server's reactions have followed the log and fired what is due: no
projection or reaction has stopped; every table of every registered read model equals a fresh
replay of the whole log through the projections; the read models agree with the model (stock
never negative, reserved = the lines of PLACED and PAID orders, each order's status, payments
and deadline, the low-stock flags, the dashboard's counts, revenue and units, each product's
review count and average; each order's address and email until its customer is
forgotten, and no plaintext of a forgotten customer anywhere readable); no order was both paid and expired, none expired twice; an
order-expiry timer exists exactly for each PLACED order, due at its deadline; a rejected
command appended nothing; an accepted one appended its events exactly once.

CI runs a bounded number of examples with a fixed seed. For a long local run:

    EVENTGRAPH_MODEL_EXAMPLES=2000 EVENTGRAPH_MODEL_SEED=random \\
        uv run pytest tests/model -p no:cacheprovider -x
"""

from __future__ import annotations

from tests.model import machine
from tests.model.features import deadlines, orders, personal, products, reviews, wishlist


class ShopMachine(
    # A new feature: its module in features/, and its class here, above those it builds on.
    personal.Personal,
    deadlines.Deadlines,
    reviews.Reviews,
    wishlist.Wishlists,
    orders.Orders,
    products.Products,
):
    """The whole shop: every feature's rules, model and checks."""


def test_the_shop_against_its_model(shared: machine.Shared) -> None:
    machine.run(ShopMachine)
