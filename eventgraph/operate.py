"""The operator's commands on the read side: rebuild a projection, see each projection's
state, park the one event a projection cannot apply, let a stopped projection resume."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from eventgraph.config import Settings
from eventgraph.database import database_url


def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from eventgraph.runtime import open_runtime
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
        async with open_runtime(
            dsn, run_projectors=False, max_pool=4, broadcast_url=settings.broadcast_url
        ) as runtime:
            for projection in chosen:
                try:
                    done = await rebuild(dsn, runtime.store, projection, show)
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
    """Each projection's status, checkpoint, lag, what stopped it, and its parked events."""
    import json

    from eventgraph.runtime import create_pool
    from eventstore.store import EventStore
    from projections.operations import status

    async def run(dsn: str) -> dict[str, Any]:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            head = await EventStore(pool).head()
            return await status(pool, head, settings.max_lag_events, detail=True)
        finally:
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
    return 0 if report["ready"] else 1


def _on_connection(
    settings: Settings, command: str, act: Callable[[asyncpg.Connection], Awaitable[str]]
) -> int:
    """Run `act` on one connection and print what it says; a refusal (exit 1) or an
    unmigrated database (exit 2) is one line on stderr."""
    from projections.operations import ParkRefused

    async def run(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            print(await act(conn))
        except ParkRefused as exc:
            print(f"eventgraph {command}: refused: {exc}", file=sys.stderr)
            return 1
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print("the database is not migrated: run `eventgraph migrate`", file=sys.stderr)
            return 2
        finally:
            await conn.close()
        return 0

    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def park(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from projections.operations import park

    async def act(conn: asyncpg.Connection) -> str:
        done = await park(conn, args.projection, args.position, args.reason, args.by)
        then = "it resumes now" if done.resumed else "it will pass over it when it gets there"
        return (
            f"parked {done.event_type} at position {done.position} (stream {done.stream_id})"
            f" for {done.projection}: {then}; rebuilds pass over it too"
        )

    if args.by is None:
        try:
            args.by = getpass.getuser()
        except (KeyError, OSError):
            args.by = "operator"
    return _on_connection(settings, "park", act)


def resume(args: argparse.Namespace, settings: Settings) -> int:
    from projections.operations import resume

    async def act(conn: asyncpg.Connection) -> str:
        stopped = await resume(conn, args.projection)
        name = args.projection
        return f"{name} goes on from its checkpoint" if stopped else f"{name} had not stopped"

    return _on_connection(settings, "resume", act)
