"""The shared machinery of the model-based test: the server it drives (`Shared`), sending a
command and checking that it appended its events once or nothing, the hostile step, and the
check after every step that no projection stopped and every read model equals a fresh replay.

Features (tests/model/features/) subclass `ShopModel`, one module each: their rules (plain
Hypothesis `@rule`s) and the hooks below. The machine that runs derives from all of them
(tests/model/test_shop_model.py). Each feature's own hook runs, the features it builds on
first; a hook never calls `super()`."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.kit.server import Server, token
from tests.model.db import Db

EXAMPLES = int(os.environ.get("EVENTGRAPH_MODEL_EXAMPLES", "12"))
STEPS = int(os.environ.get("EVENTGRAPH_MODEL_STEPS", "25"))
SEEDED = os.environ.get("EVENTGRAPH_MODEL_SEED", "fixed") != "random"
SHRINK = os.environ.get("EVENTGRAPH_MODEL_SHRINK", "1") == "1"

WINDOW = timedelta(seconds=1800)
"""The server's payment window: its default."""
LOW = 5
"""The server's low-stock threshold: its default."""
REACTIONS = ["order-expiry", "low-stock"]

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
"""The codes a hostile value may be refused with."""

Case = tuple[str, str, dict[str, Any]]
"""A request of the hostile step: who sends it, the document, its variables."""


@dataclass
class Shared:
    """What every example of a run shares: the server, its databases, an HTTP client."""

    server: Server
    db: Db
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    def bearer(self, sub: str, role: str) -> dict[str, str]:
        if sub not in self.tokens:
            self.tokens[sub] = token(sub, role)
        return {"Authorization": f"Bearer {self.tokens[sub]}"}


SHARED: Shared | None = None
"""Set by the `shared` fixture (conftest.py) for the machines Hypothesis makes."""

HOOKS = ("start", "opening", "hostile_cases", "accept", "check")


class ShopModel(RuleBasedStateMachine):
    """Several customers (one with a name in Unicode) and a staff member, new in each example,
    with a prefix of their own for what they create; the hooks each feature fills in."""

    def __init__(self) -> None:
        super().__init__()
        assert SHARED is not None
        self.s = SHARED
        run = uuid.uuid4().hex[:6]
        self.prefix = f"M{run}-"
        self.customers = [f"ann-{run}", f"Zoë Ünal {run}", f"bob smith-{run}"]
        self.staff = f"staff-{run}"
        for start in self.hooks("start"):
            start()

    # What a feature contributes (each overrides those it needs; none calls super()) ------

    def start(self) -> None:
        """Make this feature's part of the model, empty (in each new example)."""

    def opening(self, data: st.DataObject) -> None:
        """What every example begins with (a catalogue, an order to expire...)."""

    def hostile_cases(self, text: str, number: str, integer: int) -> list[Case]:
        """Requests of this feature's mutations, each with one hostile value in one argument."""
        return []

    def accept(self, query: str, variables: dict[str, Any], payload: dict[str, Any]) -> bool:
        """A hostile case of this feature succeeded (a value odd but valid): take it into the
        model and say True; False if the case is not this feature's."""
        return False

    def check(self) -> None:
        """After every step, with the read side caught up: it agrees with this model."""

    # Composition ------------------------------------------------------------------------

    @classmethod
    def features(cls) -> list[type[ShopModel]]:
        """The features composed in this machine, each after those it builds on."""
        return [c for c in reversed(cls.__mro__) if issubclass(c, ShopModel) and c != ShopModel]

    def hooks(self, name: str) -> list[Callable[..., Any]]:
        """Each feature's own `name` hook, bound, in the order of `features`."""
        return [vars(f)[name].__get__(self) for f in self.features() if name in vars(f)]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Two features (or a feature and this class) defining a rule or helper of the same
        name would silently lose one."""
        super().__init_subclass__(**kwargs)
        owner: dict[str, type] = {}
        composed: list[type[ShopModel]] = [ShopModel, *cls.features()]
        for feature in composed:
            for name in vars(feature):
                if name.startswith("__") or name in HOOKS:
                    continue
                if owner.setdefault(name, feature) is not feature:
                    raise TypeError(f"{feature.__name__}.{name} hides {owner[name].__name__}'s")

    # Transport --------------------------------------------------------------------------

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

    def ask(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """A query as staff, which must succeed: its data."""
        body = self.call(self.staff, query, variables)
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

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

    # Rules every feature shares -----------------------------------------------------------

    @initialize(data=st.data())
    def begin(self, data: st.DataObject) -> None:
        for opening in self.hooks("opening"):
            opening(data)

    @rule(
        data=st.data(),
        text=st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=30)),
        number=st.sampled_from(HOSTILE_NUMBERS),
        integer=st.sampled_from(HOSTILE_INTS),
    )
    def hostile(self, data: st.DataObject, text: str, number: str, integer: int) -> None:
        """A hostile value in one argument of one mutation: a clean refusal, nothing stored."""
        cases = [case for of in self.hooks("hostile_cases") for case in of(text, number, integer)]
        who, query, variables = data.draw(st.sampled_from(cases))
        before = self.s.db.head_count()
        body = self.call(who, query, variables)
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        if not codes:  # a value that is odd but valid (a unicode sku name, a long key...)
            payload = next(iter(body["data"].values()))
            accepted = any(accept(query, variables, payload) for accept in self.hooks("accept"))
            assert accepted, f"a hostile value was accepted: {variables}"
            return
        assert codes <= TOLERATED, (variables, body)
        assert "INTERNAL" not in str(body) and "byte sequence" not in str(body)
        assert self.s.db.head_count() == before

    @invariant()
    def read_side_is_whole_and_agrees_with_the_model(self) -> None:
        settled(self.s)
        ready = caught_up(self.s)
        for name, projection in ready["projections"].items():
            assert projection["status"] == "running", (name, projection["error"])
        assert self.s.db.replay_matches() == [], "a read model differs from a fresh replay"
        for check in self.hooks("check"):
            check()


def settled(shared: Shared, seconds: float = 30) -> None:
    """Once the server's reactions have followed the whole log and fired every timer that is
    due by the real clock (the low-stock flags; no deadline is due in real time)."""
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


def run(machine: type[ShopModel]) -> None:
    """Run `machine` as the settings say (EVENTGRAPH_MODEL_EXAMPLES, _STEPS, _SEED, _SHRINK)."""
    run_state_machine_as_test(
        machine,
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
