"""The operator's commands: on the read side, rebuild a projection, see each projection's
state, park the one event a projection cannot apply, let a stopped projection resume; on the
event store, rotate the master key that wraps the personal-data keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from eventgraph.config import ConfigError, Settings
from eventgraph.database import database_url

MAX_POSITION = 2**63 - 1
"""Positions are PostgreSQL bigints."""


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from eventgraph.runtime import runtime_for
    from projections import all_projections, by_name
    from projections.rebuild import Progress, RebuildFailed, rebuild

    if args.all == bool(args.name):
        print("name one projection, or --all", file=sys.stderr)
        return 2
    try:
        chosen = all_projections() if args.all else [by_name(args.name)]
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2

    def show(p: Progress) -> None:
        left = f"{p.seconds_left:.0f}s left" if p.seconds_left != float("inf") else ""
        print(
            f"\r{p.name}: {p.done:,} / {p.head:,} events, {p.rate:,.0f}/s {left}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    async def run(dsn: str) -> int:
        # The same bootstrap as `serve` and `project` (migrations included), without
        # projectors of its own.
        async with runtime_for(settings, dsn, run_projectors=False, max_pool=4) as runtime:
            for projection in chosen:
                try:
                    done = await rebuild(runtime.read_dsn, runtime.store, projection, show)
                except RebuildFailed as exc:
                    print(f"\n{projection.name}: rebuild failed: {exc}", file=sys.stderr)
                    return 1
                print(
                    f"\n{done.name}: rebuilt {done.done:,} events at {done.rate:,.0f}/s;"
                    " now serving the new tables",
                    file=sys.stderr,
                )
            return 0

    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def projections(args: argparse.Namespace, settings: Settings) -> int:
    """Each projection's status, checkpoint, lag, what stopped it, and its parked events;
    then each reaction's checkpoint, lag and timers."""
    import json

    from application.reactions import reaction_status
    from application.shop import reactions
    from eventgraph.runtime import create_pool
    from eventstore.store import EventStore
    from projections.operations import status

    async def run(dsn: str) -> dict[str, Any]:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        reads = pool
        try:
            if settings.read_database_url:
                reads = await create_pool(settings.read_database_url, min_size=1, max_size=2)
            head = await EventStore(pool).head()
            report = await status(reads, head, settings.max_lag_events, detail=True, log=pool)
            active = [r.name for r in reactions(settings.policy())]
            return report | {"reactions": await reaction_status(pool, head, active)}
        finally:
            if reads is not pool:
                await reads.close()
            await pool.close()

    with database_url(settings.database_url, settings.data_dir) as dsn:
        try:
            report = asyncio.run(run(dsn))
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print("the database is not migrated: run `eventgraph migrate`", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["ready"] else 1
    print(f"log head: {report['head']:,}")
    print(f"{'projection':<12} {'status':<8} {'checkpoint':>12} {'lag':>10} {'lag s':>8}  parked")
    for name, p in report["projections"].items():
        print(
            f"{name:<12} {p['status']:<8} {p['checkpoint']:>12,} {p['lagEvents']:>10,}"
            f" {p['lagSeconds']:>8.1f}  {len(p['parked'])}"
        )
        if p["stoppedAt"]:
            at = p["stoppedAt"]
            print(
                f"  stopped at position {at['position']}: {at['type']} on {at['streamId']}"
                f" (event {at['eventId']})\n  error: {p['error']}\n  to pass over it:"
                f" eventgraph park {name} {at['position']} --reason '…'"
            )
        for k in p["parked"]:
            print(
                f"  parked {k['position']} ({k['type']} on {k['streamId']}) by {k['parkedBy']}"
                f" at {k['parkedAt']}: {k['reason']}"
            )
    print(f"{'reaction':<12} {'status':<8} {'checkpoint':>12} {'lag':>10}  timers (overdue s)")
    for name, r in report["reactions"].items():
        print(
            f"{name:<12} {r['status']:<8} {r['checkpoint']:>12,} {r['lagEvents']:>10,}"
            f"  {r['timersPending']:,} ({r['oldestOverdueSeconds']:.1f})"
        )
        if r["error"]:
            print(f"  stopped at position {r['stoppedAt']}: {r['error']}")
    return 0 if report["ready"] else 1


def _on_connection(
    settings: Settings,
    command: str,
    act: Callable[[asyncpg.Connection, asyncpg.Connection], Awaitable[str]],
) -> int:
    """Run `act` on a connection to the read side (and one to the log, the same unless the
    read side has its own database) and print what it says; a refusal (exit 1) or an
    unmigrated database (exit 2) is one line on stderr."""
    from projections.operations import ParkRefused

    async def run(dsn: str) -> int:
        log = await asyncpg.connect(dsn)
        conn = (
            await asyncpg.connect(settings.read_database_url) if settings.read_database_url else log
        )
        try:
            print(await act(conn, log))
        except ParkRefused as exc:
            print(f"eventgraph {command}: refused: {exc}", file=sys.stderr)
            return 1
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print("the database is not migrated: run `eventgraph migrate`", file=sys.stderr)
            return 2
        finally:
            await conn.close()
            if log is not conn:
                await log.close()
        return 0

    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def park(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from projections.operations import park

    async def act(conn: asyncpg.Connection, log: asyncpg.Connection) -> str:
        done = await park(conn, args.projection, args.position, args.reason, args.by, log)
        then = "it resumes now" if done.resumed else "it will pass over it when it gets there"
        return (
            f"parked {done.event_type} at position {done.position} (stream {done.stream_id})"
            f" for {done.projection}: {then}; rebuilds pass over it too"
        )

    if not 1 <= args.position <= MAX_POSITION:
        print(
            f"eventgraph park: {args.position} is not a log position (1 to {MAX_POSITION})",
            file=sys.stderr,
        )
        return 2
    if args.by is None:
        try:
            args.by = getpass.getuser()
        except (KeyError, OSError):
            args.by = "operator"
    return _on_connection(settings, "park", act)


def resume(args: argparse.Namespace, settings: Settings) -> int:
    from projections.operations import resume

    async def act(conn: asyncpg.Connection, _log: asyncpg.Connection) -> str:
        stopped = await resume(conn, args.projection)
        name = args.projection
        return f"{name} goes on from its checkpoint" if stopped else f"{name} had not stopped"

    return _on_connection(settings, "resume", act)


def rotate_master_key(args: argparse.Namespace, settings: Settings) -> int:
    """Rewrap every personal-data key under the first of EVENTGRAPH_MASTER_KEY's keys (each
    batch its own transaction: an interrupted rotation resumes where it was), then say how
    many remain under other master keys. Exit 1 while any remain: the earlier keys must be
    kept until none does. Never prints a key."""
    from eventgraph.config import parse_master_keys
    from eventstore.personal import MasterKeyError, PersonalKeys

    if not settings.master_key:
        print(
            "eventgraph rotate-master-key: set EVENTGRAPH_MASTER_KEY=new,old[,...] (the new key"
            " first, then every earlier one still in use; `eventgraph master-key` makes one):"
            " a rotation uses the keys given, never a generated one",
            file=sys.stderr,
        )
        return 2
    if args.batch < 1:
        print("eventgraph rotate-master-key: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        masters = parse_master_keys(settings.master_key)
    except MasterKeyError as exc:
        raise ConfigError(str(exc)) from None
    keys = PersonalKeys(masters)
    given = [m.id for m in masters]

    async def run(dsn: str) -> tuple[int, int, int]:
        conn = await asyncpg.connect(dsn)
        try:
            done = await keys.rotate(conn, batch=args.batch)
            remain = await conn.fetchval(
                "SELECT count(*) FROM eventgraph.personal_keys WHERE master_id <> $1",
                keys.master.id,
            )
            unknown = await conn.fetchval(
                "SELECT count(*) FROM eventgraph.personal_keys WHERE master_id <> ALL($1::text[])",
                given,
            )
            return done, remain, unknown
        finally:
            await conn.close()

    with database_url(settings.database_url, settings.data_dir) as dsn:
        try:
            done, remain, unknown = asyncio.run(run(dsn))
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print(
                "eventgraph rotate-master-key: the database is not migrated:"
                " run `eventgraph migrate`",
                file=sys.stderr,
            )
            return 2
    print(
        f"rewrapped {done:,} data keys under the new master key (id {keys.master.id});"
        f" {remain:,} remain under other master keys"
    )
    if unknown:
        print(
            f"eventgraph rotate-master-key: warning: {unknown:,} data keys are under a master key"
            " not given in EVENTGRAPH_MASTER_KEY; they cannot be unwrapped (their personal"
            " data reads as erased) until that key is given after the new one",
            file=sys.stderr,
        )
    if remain > unknown:
        print(
            f"eventgraph rotate-master-key: warning: {remain - unknown:,} data keys under an"
            " earlier master key given here were not rewrapped (in use at the time, or"
            " damaged): run again, and keep the earlier keys until none remains",
            file=sys.stderr,
        )
    return 1 if remain else 0


def _scrape(url: str, token: str | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    request = urllib.request.Request(url.rstrip("/") + "/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # the caller checked: http(s)
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _by(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str
) -> dict[str, float]:
    found: dict[str, float] = {}
    for (n, labels), value in samples.items():
        if n == name:
            key = dict(labels).get(label, "")
            found[key] = found.get(key, 0.0) + value
    return found


def status(args: argparse.Namespace, settings: Settings) -> int:
    """One screen for a terminal: each server's connections, subscriptions, command and error
    rates, pool and fan-out, and the projections' checkpoints, lag and parked events, all
    read from the servers' /metrics (the numbers Prometheus sees)."""
    import time
    import urllib.error
    import urllib.parse

    urls = args.url or ["http://127.0.0.1:8000"]
    for url in urls:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            print(f"eventgraph status: {url!r} is not an http(s) URL", file=sys.stderr)
            return 2
    first: dict[str, Any] = {}
    unreachable: list[str] = []
    for url in urls:
        try:
            first[url] = _scrape(url, settings.metrics_token)
        except urllib.error.HTTPError as exc:
            hint = " (set EVENTGRAPH_METRICS_TOKEN)" if exc.code == 401 else ""
            print(f"{url}: /metrics answered {exc.code}{hint}")
        except (OSError, ValueError) as exc:
            unreachable.append(f"{url}: not reachable ({exc})")
    if len(unreachable) == len(urls):  # nothing to show at all: a refusal, in one line
        print(
            f"eventgraph status: no server reachable ({'; '.join(unreachable)});"
            " `eventgraph projections` reads the database directly",
            file=sys.stderr,
        )
        return 2
    for line in unreachable:
        print(line)
    if not first:
        return 1
    time.sleep(args.interval)
    projections_from: Any = None
    for url, before in first.items():
        try:
            after = _scrape(url, settings.metrics_token)
        except (OSError, ValueError) as exc:
            print(f"{url}: not reachable ({exc})")
            continue
        projections_from = projections_from or after

        def rate(name: str, *, before: Any = before, after: Any = after) -> float:
            moved = max(_sum(after, name) - _sum(before, name), 0.0)
            return float(moved / args.interval)

        errors = sum(
            value
            for (n, labels), value in after.items()
            if n == "eventgraph_graphql_operations_total" and dict(labels).get("outcome") != "ok"
        ) - sum(
            value
            for (n, labels), value in before.items()
            if n == "eventgraph_graphql_operations_total" and dict(labels).get("outcome") != "ok"
        )
        subscriptions = _by(after, "eventgraph_subscriptions", "field")
        listed = ", ".join(f"{f} {int(n)}" for f, n in sorted(subscriptions.items()) if n) or "none"
        print(
            f"{url}\n"
            f"  connections {int(_sum(after, 'eventgraph_websocket_connections'))}"
            f"  subscriptions: {listed}"
            f"  shared executions {int(_sum(after, 'eventgraph_shared_executions'))}\n"
            f"  commands {rate('eventgraph_commands_total'):.1f}/s"
            f"  errors {max(errors, 0) / args.interval:.1f}/s"
            f"  views delivered {rate('eventgraph_live_deliveries_total'):.1f}/s\n"
            f"  pool {int(_sum(after, 'eventgraph_pool_connections_in_use'))}"
            f"/{int(_sum(after, 'eventgraph_pool_connections'))} in use"
            f"  fan-out {'connected' if _sum(after, 'eventgraph_fanout_connected') else 'DOWN'}"
        )
    if projections_from is None:
        return 1
    checkpoint = _by(projections_from, "eventgraph_projection_checkpoint", "projection")
    head = _by(projections_from, "eventgraph_projection_head", "projection")
    lag = _by(projections_from, "eventgraph_projection_lag_events", "projection")
    lag_s = _by(projections_from, "eventgraph_projection_lag_seconds", "projection")
    parked = _by(projections_from, "eventgraph_projection_parked_events", "projection")
    print(f"{'projection':<12} {'checkpoint':>12} {'head':>12} {'lag':>10} {'lag s':>8}  parked")
    for name in sorted(checkpoint):
        print(
            f"{name:<12} {int(checkpoint[name]):>12,} {int(head.get(name, 0)):>12,}"
            f" {int(lag.get(name, 0)):>10,} {lag_s.get(name, 0.0):>8.1f}"
            f"  {int(parked.get(name, 0))}"
        )
    return 0 if len(first) == len(urls) else 1
