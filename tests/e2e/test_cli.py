"""The `eventgraph` command on a fresh machine: the embedded database, tokens, the SDL."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from application.auth import verify_sign_in_code, verify_token
from projections import READ_MODELS
from tests.kit.server import free_port

CONTRACT = Path(__file__).parents[3] / "shared" / "contract" / "schema.graphql"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventgraph.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def clean_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EVENTGRAPH_"))}
    env["EVENTGRAPH_DATA_DIR"] = str(data_dir)
    return env


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "eventgraph.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not start")


def postgres_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory whose parents the embedded server's user can enter (pytest's own
    temporary directories are closed to other users, and EventGraph opens nothing above its
    data directory)."""
    path = Path(tempfile.mkdtemp(prefix="eventgraph-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serve_on_the_embedded_database_keeps_data_and_stops_it_on_ctrl_c(
    data_dir: Path,
) -> None:
    tmp_path = data_dir
    env = clean_env(tmp_path / "data")
    process, url = serve(env)
    try:
        token = cli("token", "--sub", "sam", "--role", "staff", env=env).stdout.strip()
        mutation = 'mutation { registerProduct(sku: "KEEP-1", name: "Kept", unitPrice: "1.00") { position } }'
        response = httpx.post(
            url + "/graphql",
            json={"query": mutation},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.json()["data"]["registerProduct"]["position"] == 1, response.text
        assert postgres_running(tmp_path / "data")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    assert not postgres_running(tmp_path / "data"), "Ctrl-C stops the embedded PostgreSQL"

    process, url = serve(env)  # again: the data is still there, the secret is the same
    try:
        token = cli("token", "--sub", "sam", "--role", "staff", env=env).stdout.strip()
        query = "{ events(first: 10) { streamId } }"
        response = httpx.post(
            url + "/graphql",
            json={"query": query},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.json()["data"]["events"] == [{"streamId": "product-KEEP-1"}], response.text
    finally:
        process.terminate()
        process.wait(60)
    assert not postgres_running(tmp_path / "data"), "SIGTERM stops it too"


@pytest.mark.parametrize("command", ["rebuild", "park", "resume"])
def test_the_help_of_commands_taking_a_read_model_names_every_registered_one(
    tmp_path: Path, command: str
) -> None:
    shown = cli(command, "--help", env=clean_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # argparse wraps the help at any space
    for name in [model.name for model in READ_MODELS]:
        assert re.search(rf"\b{re.escape(name)}\b", text), (name, shown.stdout)


def test_token_uses_the_configured_secret(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"EVENTGRAPH_JWT_SECRET": "s" * 40}
    result = cli("token", "--sub", "alice", "--role", "customer", env=env)
    principal = verify_token("s" * 40, result.stdout.strip())
    assert (principal.sub, principal.role) == ("alice", "customer")
    assert cli("token", "--sub", "alice", "--role", "admin", env=env).returncode != 0


def test_token_open_prints_a_url_that_signs_the_dashboard_in(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"EVENTGRAPH_JWT_SECRET": "s" * 40}
    args = ("token", "--sub", "stella", "--role", "staff", "--open")
    result = cli(*args, "--url", "https://shop.example:8443/", env=env)
    url, _, code = result.stdout.strip().partition("#code=")
    assert url == "https://shop.example:8443/"
    assert verify_sign_in_code("s" * 40, code).role == "staff"  # a one-time code, not a token
    bad_addresses = (
        "javascript:alert(1)",
        "http://x/ #",
        "ftp://x",
        "http://x/path?q",
        "http://shop.example@evil.example",
        "http://shop.example\\@evil.example",
        "http://x:99999",
        "http://x?",
    )
    for bad in bad_addresses:
        refused = cli(*args, "--url", bad, env=env)
        assert refused.returncode == 2 and "#code=" not in refused.stdout


def test_migrate_is_repeatable(tmp_path: Path, database_url: str) -> None:
    env = clean_env(tmp_path) | {"DATABASE_URL": database_url}
    first = cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert cli("migrate", env=env).stdout.strip() == "up to date"


def _definitions(sdl: str) -> dict[str, set[str]]:
    """Each type's name mapped to its fields (with arguments), ignoring descriptions."""
    sdl = re.sub(r'"""(.|\n)*?"""', "", sdl)
    sdl = re.sub(r'"(?:[^"\\\n]|\\.)*"', "", sdl)
    found: dict[str, set[str]] = {}
    for kind, name, body in re.findall(r"(type|input|enum)\s+(\w+)[^{]*\{([^}]*)\}", sdl):
        found[f"{kind} {name}"] = {
            " ".join(line.split()) for line in body.splitlines() if line.strip()
        }
    for name in re.findall(r"scalar\s+(\w+)", sdl):
        found[f"scalar {name}"] = set()
    return found


@pytest.mark.skipif(not CONTRACT.exists(), reason="the shared contract is not beside the checkout")
def test_printed_sdl_contains_the_contract(tmp_path: Path) -> None:
    printed = _definitions(cli("schema", env=clean_env(tmp_path)).stdout)
    contract = {name: fields for name, fields in _definitions(CONTRACT.read_text()).items()}
    # A built part of coming.graphql may say a field's line in schema.graphql "becomes" another.
    parts = _coming_parts()
    for title in BUILT:
        for line, field in re.findall(r"becomes:\n#\s+((\w+)\(.*?)\s*$", parts[title], re.M):
            for fields in contract.values():
                old = {f for f in fields if f.startswith(field + "(")}
                if old:
                    fields -= old
                    fields.add(" ".join(line.split()))
    missing = {
        name: sorted(fields - printed.get(name, set()))
        for name, fields in contract.items()
        if name not in printed or not fields <= printed[name]
    }
    assert not missing


COMING = CONTRACT.with_name("coming.graphql")
BUILT = ("Order deadlines", "The wishlist", "Personal data")
"""The parts of coming.graphql built so far: each is owed from now on, as schema.graphql is."""


def _coming_parts() -> dict[str, str]:
    parts = re.split(r"^# -{20,}\n", COMING.read_text(), flags=re.MULTILINE)
    found = {}
    for part in parts[1:]:
        title = re.match(r"# (.+?) \(issue", part)
        if title:
            found[title.group(1)] = part
    return found


@pytest.mark.skipif(not COMING.exists(), reason="the shared contract is not beside the checkout")
def test_printed_sdl_contains_the_built_parts_of_the_coming_contract(tmp_path: Path) -> None:
    printed = _definitions(cli("schema", env=clean_env(tmp_path)).stdout)
    parts = _coming_parts()
    for title in BUILT:
        owed = _definitions(parts[title])
        assert owed, title
        missing = {
            name: sorted(fields - printed.get(name, set()))
            for name, fields in owed.items()
            if not fields <= printed.get(name, set())
        }
        assert not missing, title


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTGRAPH_PUBLISH_URL", "http://broker.example/"),
        ("EVENTGRAPH_PUBLISH_URL", "file:///etc/passwd"),
        ("EVENTGRAPH_LOG_FORMAT", "xml"),
    ],
)
def test_a_setting_that_cannot_be_used_stops_the_process_saying_which(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = cli("schema", env=clean_env(tmp_path) | {variable: value})
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr


def test_status_and_publish_refuse_what_they_cannot_use(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for url in ["file:///etc/passwd", "javascript:alert(1)", "ftp://127.0.0.1/"]:
        refused = cli("status", "--url", url, env=env)
        assert refused.returncode == 2 and "not an http(s) URL" in refused.stderr
    unreachable = cli("status", "--url", f"http://127.0.0.1:{free_port()}", env=env)
    assert unreachable.returncode == 2 and "not reachable" in unreachable.stderr
    assert len(unreachable.stderr.splitlines()) == 1 and not unreachable.stdout
    without = cli("publish", env=env)
    assert without.returncode == 2 and "EVENTGRAPH_PUBLISH_URL" in without.stderr


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


def refused_in_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["projections"],
        ["park", "orders", "1", "--reason", "x"],
        ["resume", "orders"],
        ["migrate"],
        ["rebuild", "products"],
        ["project"],
        ["publish"],
        ["status"],
        ["serve", "--port", "0"],
    ],
    ids=lambda command: command[0],
)
def test_every_command_refuses_an_unreachable_database_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    env = clean_env(tmp_path) | {
        "DATABASE_URL": UNREACHABLE,
        "EVENTGRAPH_JWT_SECRET": "s" * 40,
        "EVENTGRAPH_PUBLISH_URL": "amqp://127.0.0.1:1/",
        "EVENTGRAPH_PUBLISH_KEY": "k" * 40,
    }
    line = refused_in_one_line(cli(*command, env=env))
    assert line.startswith(f"eventgraph {command[0]}: ")
    assert "reach" in line


def test_park_refuses_a_position_beyond_the_log_in_one_line(
    tmp_path: Path, database_url: str
) -> None:
    env = clean_env(tmp_path) | {"DATABASE_URL": database_url}
    for position in ("99999999999999999999", "0", "-5"):
        line = refused_in_one_line(cli("park", "orders", position, "--reason", "x", env=env))
        assert "not a log position" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EVENTGRAPH_MAX_CONNECTIONS_PER_USER", "abc"),
        ("EVENTGRAPH_MAX_CONNECTIONS_PER_IP", "1.5"),
        ("EVENTGRAPH_MAX_CONNECTIONS", "-1"),
        ("EVENTGRAPH_HEADER_TIMEOUT_SECONDS", "soon"),
        ("EVENTGRAPH_BODY_TIMEOUT_SECONDS", "nan"),
        ("EVENTGRAPH_READ_WAIT_SECONDS", "inf"),
        ("EVENTGRAPH_MAX_LAG_EVENTS", "lots"),
        ("EVENTGRAPH_POSITION_POLL_SECONDS", ""),
    ],
)
def test_a_numeric_setting_given_junk_is_refused_in_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = clean_env(tmp_path) | {variable: value, "DATABASE_URL": UNREACHABLE}
    if value == "":
        assert cli("schema", env=env).returncode == 0  # empty: the default
        return
    line = refused_in_one_line(cli("serve", "--port", "0", env=env))
    assert variable in line


@pytest.mark.skipif(os.geteuid() != 0, reason="the embedded database's own user exists as root")
def test_as_root_the_first_run_serves_from_under_a_private_directory() -> None:
    """`mktemp -d` is 0700, as /root is: the embedded PostgreSQL's user cannot reach a data
    directory under it, so its cluster lives under /var/lib/eventgraph; the first log line
    says where."""
    from eventgraph.database import relocated_home

    private = Path(tempfile.mkdtemp(prefix="eventgraph-private-"))
    assert private.stat().st_mode & 0o777 == 0o700
    data = private / "checkout" / ".eventgraph"
    data.parent.mkdir()
    home = relocated_home(data)
    cluster = home / "pg"
    process = None
    try:
        process, url = serve(clean_env(data))
        assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert private.stat().st_mode & 0o777 == 0o700, "nothing above the data dir opened"
        assert cluster.stat().st_mode & 0o777 == 0o700
        assert cluster.stat().st_uid != 0 and home.stat().st_uid == 0
        assert home.stat().st_mode & 0o777 == 0o755
        assert (data / "pg-password").stat().st_mode & 0o777 == 0o600
        assert not (home / "pg-password").exists()
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            output = process.communicate(timeout=60)[0]
            logged = [line for line in output.splitlines() if " INFO " in line]
            assert str(cluster) in logged[0], output
            assert "Traceback" not in output
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def test_a_bug_is_told_apart_from_a_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A refusal is one line and exit 2; an error of ours is not hidden as one: it exits 1
    with its traceback, so that a script can tell them apart and a report can be filed."""
    from eventgraph import cli

    def broken(*_args: object, **_kwargs: object) -> str:
        raise KeyError("internal bug")

    monkeypatch.setenv("EVENTGRAPH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTGRAPH_JWT_SECRET", "s" * 40)
    monkeypatch.setattr(cli, "mint_token", broken)
    assert cli.main(["token", "--sub", "alice", "--role", "customer"]) == 1
    assert "Traceback" in capsys.readouterr().err
