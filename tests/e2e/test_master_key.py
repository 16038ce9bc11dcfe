"""`eventgraph master-key` and `eventgraph rotate-master-key` as an operator runs them, on a
real PostgreSQL: a new key, a rotation that rewraps every data key under the new master (the
old one then opens nothing), refusals, a warning for keys under a master not given, and never
a key in the output."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore.migrate import migrate
from eventstore.personal import MasterKey, PersonalKeys, new_master_key_text
from tests.e2e.test_cli import UNREACHABLE, clean_env, cli, refused_in_one_line

ADDRESS = {"name": "Ada Lovelace", "line1": "12 St James's Square", "city": "London"}
FIELDS = ("address", "email")


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(clean_db)
    await migrate(connection)
    yield connection
    await connection.close()


async def seal_for(
    keys: PersonalKeys, conn: asyncpg.Connection, subjects: list[str]
) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    sealed = []
    for subject in subjects:
        event_id = uuid.uuid4()
        async with conn.transaction():
            data = await keys.seal_fields(
                conn, subject, event_id, {"address": ADDRESS, "email": f"{subject}@x.test"}, FIELDS
            )
        sealed.append((event_id, data))
    return sealed


async def addresses(masters: list[MasterKey], conn: asyncpg.Connection, sealed: Any) -> list[Any]:
    return [o["address"] for o in await PersonalKeys(masters).open_fields(conn, sealed)]


async def key_rows(conn: asyncpg.Connection) -> list[tuple[str, bytes, str]]:
    rows = await conn.fetch(
        "SELECT subject, wrapped, master_id FROM eventgraph.personal_keys ORDER BY subject"
    )
    return [(r["subject"], r["wrapped"], r["master_id"]) for r in rows]


def no_key_in(result: Any, *texts: str) -> None:
    for text in texts:
        assert text not in result.stdout and text not in result.stderr


def test_master_key_prints_a_new_key_and_nothing_else(tmp_path: Path) -> None:
    printed = []
    for _ in range(2):
        result = cli("master-key", env=clean_env(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        text = result.stdout.strip()
        assert result.stdout == text + "\n" and len(text) == 43
        assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        MasterKey.from_text(text)
        printed.append(text)
    assert printed[0] != printed[1]
    assert not (tmp_path / "master-key").exists(), "nothing generated into the data dir"


def test_master_key_works_while_the_configured_key_is_malformed(tmp_path: Path) -> None:
    """The refusal of a malformed EVENTGRAPH_MASTER_KEY says to run `eventgraph master-key`."""
    result = cli("master-key", env=clean_env(tmp_path) | {"EVENTGRAPH_MASTER_KEY": "junk"})
    assert result.returncode == 0, result.stderr
    MasterKey.from_text(result.stdout.strip())


def test_the_help_says_where_the_key_goes(tmp_path: Path) -> None:
    shown = cli("--help", env=clean_env(tmp_path))
    text = " ".join(shown.stdout.split())
    assert "master-key" in text and "rotate-master-key" in text
    assert "EVENTGRAPH_MASTER_KEY" in text and "backup" in text


async def test_rotation_rewraps_every_key_under_the_new_master(
    tmp_path: Path, clean_db: str, conn: asyncpg.Connection
) -> None:
    old_text, new_text = new_master_key_text(), new_master_key_text()
    old, new = MasterKey.from_text(old_text), MasterKey.from_text(new_text)
    sealed = await seal_for(PersonalKeys([old]), conn, [f"cust-{n}" for n in range(5)])
    env = clean_env(tmp_path) | {"DATABASE_URL": clean_db}

    without = cli("rotate-master-key", env=env)
    assert refused_in_one_line(without).startswith("eventgraph rotate-master-key: ")
    assert "EVENTGRAPH_MASTER_KEY" in without.stderr and not without.stdout
    assert {m for _, _, m in await key_rows(conn)} == {old.id}, "nothing changed"
    assert not (tmp_path / "master-key").exists(), "no key generated for a rotation"

    malformed = cli("rotate-master-key", env=env | {"EVENTGRAPH_MASTER_KEY": f"{new_text},junk"})
    assert "EVENTGRAPH_MASTER_KEY" in refused_in_one_line(malformed)
    no_key_in(malformed, new_text)
    assert {m for _, _, m in await key_rows(conn)} == {old.id}

    rotated = cli(
        "rotate-master-key", env=env | {"EVENTGRAPH_MASTER_KEY": f"{new_text},{old_text}"}
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "rewrapped 5 " in rotated.stdout and "0 remain" in rotated.stdout
    no_key_in(rotated, new_text, old_text)
    assert {m for _, _, m in await key_rows(conn)} == {new.id}
    assert await addresses([new], conn, sealed) == [ADDRESS] * 5
    assert await addresses([old], conn, sealed) == [None] * 5

    again = cli("rotate-master-key", env=env | {"EVENTGRAPH_MASTER_KEY": f"{new_text},{old_text}"})
    assert again.returncode == 0, again.stderr
    assert "rewrapped 0 " in again.stdout and "0 remain" in again.stdout
    no_key_in(again, new_text, old_text)


async def test_keys_under_a_master_not_given_are_warned_about(
    tmp_path: Path, clean_db: str, conn: asyncpg.Connection
) -> None:
    old_text, new_text, lost_text = (new_master_key_text() for _ in range(3))
    old, new, lost = (MasterKey.from_text(t) for t in (old_text, new_text, lost_text))
    sealed = await seal_for(PersonalKeys([old]), conn, ["ada", "bob", "cy"])
    sealed += await seal_for(PersonalKeys([lost]), conn, ["dee", "eve"])
    before = {s: (w, m) for s, w, m in await key_rows(conn)}
    env = clean_env(tmp_path) | {
        "DATABASE_URL": clean_db,
        "EVENTGRAPH_MASTER_KEY": f"{new_text},{old_text}",
    }

    result = cli("rotate-master-key", env=env)
    assert result.returncode == 1, result.stderr
    assert "rewrapped 3 " in result.stdout and "2 remain" in result.stdout
    assert "warning: 2 " in result.stderr and "Traceback" not in result.stderr
    no_key_in(result, old_text, new_text, lost_text)
    after = {s: (w, m) for s, w, m in await key_rows(conn)}
    assert {s for s, (_, m) in after.items() if m == new.id} == {"ada", "bob", "cy"}
    assert {s: after[s] for s in ("dee", "eve")} == {s: before[s] for s in ("dee", "eve")}
    assert await addresses([new], conn, sealed) == [ADDRESS] * 3 + [None] * 2
    assert await addresses([lost], conn, sealed) == [None] * 3 + [ADDRESS] * 2


def test_an_unreachable_database_is_refused_in_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {
        "DATABASE_URL": UNREACHABLE,
        "EVENTGRAPH_MASTER_KEY": new_master_key_text(),
    }
    line = refused_in_one_line(cli("rotate-master-key", env=env))
    assert line.startswith("eventgraph rotate-master-key: ") and "reach" in line
