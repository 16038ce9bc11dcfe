"""Personal data encrypted per person, forgotten by destroying the person's key
(crypto-shredding).

Events are immutable, so personal data (a shipping address, an email) is never written to the
log in clear: each personal field of an event is sealed with a data key of the person it is
about (its *subject*, a customer id), with AES-256-GCM and the event's id as associated data,
so a sealed field cannot be moved to another event and still open. Data keys live in
`eventgraph.personal_keys`, beside the log and never on the read side, each wrapped by the
master key (`EVENTGRAPH_MASTER_KEY`). Forgetting a person deletes their row: every field
sealed with that key is from then on unreadable everywhere, in the log, in its backups and in
every replay, and reads answer None ("erased") for it.

A sealed field is a JSON object, the *envelope*:
`{"$personal": 1, "subject": ..., "key": <key id>, "sealed": <base64url(nonce || ciphertext)>}`.
The key id is the data key's own (a uuid), not the subject's: a person forgotten and then
back gets a new key, and an envelope of the old key stays erased even where the new one is
cached.

Keys are made on first use inside the caller's transaction (`PersonalKeys.for_write`), so a
command's events and the key that seals them commit together. Reads go through a cache of
bounded size whose entries live `ttl` seconds: a process that did not do the forgetting stops
opening a forgotten person's data within that time (the one that did, at once). A key that is
missing, corrupt or wrapped by an unknown master key opens nothing: the field is erased, never
an error that would stop a projection. Neither keys nor plaintext appear in an exception's
message or a log line of this module."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventstore.events import InvalidEventError, NewEvent, RecordedEvent

Conn = asyncpg.Connection | PoolConnectionProxy
"""A connection, or one lent by a pool."""

ENVELOPE: Final = "$personal"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


class MasterKeyError(ValueError):
    """EVENTGRAPH_MASTER_KEY is not a usable key (the message never repeats it)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_master_key_text() -> str:
    """A fresh master key as EVENTGRAPH_MASTER_KEY takes it (base64url of 32 random bytes)."""
    return _b64(os.urandom(KEY_BYTES))


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps every data key. `id` is a fingerprint, stored beside each wrapped
    key to say which master wrapped it (rotation finds the keys still on the old one)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"  # never the secret

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """From EVENTGRAPH_MASTER_KEY: base64url (or standard base64) of 32 bytes."""
        try:
            secret = _unb64(text.strip().replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            raise MasterKeyError(
                "EVENTGRAPH_MASTER_KEY is not base64; generate one: eventgraph master-key"
            ) from None
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(
                f"EVENTGRAPH_MASTER_KEY must be {KEY_BYTES} bytes (base64url);"
                " generate one: eventgraph master-key"
            )
        return cls(secret)

    @property
    def id(self) -> str:
        return hashlib.sha256(b"eventgraph master key\x00" + self.secret).hexdigest()[:16]

    def wrap(self, data_key: bytes, key_id: uuid.UUID) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.secret).encrypt(nonce, data_key, key_id.bytes)

    def unwrap(self, wrapped: bytes, key_id: uuid.UUID) -> bytes | None:
        """The data key, or None if `wrapped` was not made by this master for this key id."""
        try:
            key = AESGCM(self.secret).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], key_id.bytes
            )
        except (InvalidTag, ValueError):
            return None
        return key if len(key) == KEY_BYTES else None


@dataclass(frozen=True)
class DataKey:
    id: uuid.UUID
    secret: bytes

    def __repr__(self) -> str:
        return f"DataKey(id={self.id})"


def seal(key: DataKey, subject: str, event_id: uuid.UUID, value: Any) -> dict[str, Any]:
    """`value` (anything JSON) as an envelope only `key` opens, and only for `event_id`."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key.secret).encrypt(nonce, orjson.dumps(value), event_id.bytes)
    return {ENVELOPE: 1, "subject": subject, "key": str(key.id), "sealed": _b64(nonce + sealed)}


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(ENVELOPE) == 1


def envelope_key(value: Mapping[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value["key"]))
    except (KeyError, ValueError):
        return None


def open_envelope(key: DataKey | None, event_id: uuid.UUID, envelope: Mapping[str, Any]) -> Any:
    """The value sealed in `envelope`, or None (erased) without the right key, or if the
    envelope was altered or belongs to another event."""
    if key is None or envelope_key(envelope) != key.id:
        return None
    try:
        raw = _unb64(str(envelope["sealed"]))
        plain = AESGCM(key.secret).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], event_id.bytes)
        return orjson.loads(plain)
    except (KeyError, InvalidTag, ValueError, binascii.Error, orjson.JSONDecodeError):
        return None


_MAKE = """
INSERT INTO eventgraph.personal_keys (subject, key_id, wrapped, master_id)
VALUES ($1, $2, $3, $4) ON CONFLICT (subject) DO NOTHING
RETURNING key_id, wrapped, master_id
"""

_SHARE = """
SELECT key_id, wrapped, master_id FROM eventgraph.personal_keys WHERE subject = $1 FOR SHARE
"""


class PersonalKeys:
    """The data keys: made on first use, read through a bounded cache, destroyed to forget.

    `masters` are the master keys a wrapped key may be under: the first wraps new keys, the
    others are earlier ones still read during a rotation."""

    def __init__(
        self,
        masters: Iterable[MasterKey],
        *,
        ttl: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.masters = tuple(masters)
        if not self.masters:
            raise MasterKeyError("no master key")
        self._by_id = {m.id: m for m in self.masters}
        self._ttl = ttl
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[uuid.UUID, tuple[float, DataKey | None]] = OrderedDict()

    @property
    def master(self) -> MasterKey:
        return self.masters[0]

    def _unwrap(self, row: asyncpg.Record) -> DataKey | None:
        master = self._by_id.get(row["master_id"])
        secret = None if master is None else master.unwrap(bytes(row["wrapped"]), row["key_id"])
        return None if secret is None else DataKey(row["key_id"], secret)

    def _remember(self, key_id: uuid.UUID, key: DataKey | None) -> None:
        self._cache[key_id] = (self._clock() + self._ttl, key)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)

    async def for_write(self, conn: Conn, subject: str) -> DataKey:
        """`subject`'s key, made now if it has none, in the caller's transaction on `conn`
        (it commits with the events it seals, and a concurrent forget waits for them). A key
        that will not unwrap (a master key lost) is replaced: what it sealed was lost with it."""
        for _ in range(3):
            # The common case first: the key is there, and a share lock holds off a forget
            # until the caller commits. Else it is made; of two makers racing, one wins.
            row = await conn.fetchrow(_SHARE, subject)
            if row is None:
                key_id, secret = uuid.uuid4(), os.urandom(KEY_BYTES)
                wrapped = self.master.wrap(secret, key_id)
                row = await conn.fetchrow(_MAKE, subject, key_id, wrapped, self.master.id)
                if row is None:
                    continue  # made by another meanwhile: share theirs
            key = self._unwrap(row)
            if key is not None:
                self._remember(key.id, key)
                return key
            # A key no master here unwraps: what it sealed is lost with it; a new one.
            await conn.execute(
                "DELETE FROM eventgraph.personal_keys WHERE subject = $1 AND key_id = $2",
                subject,
                row["key_id"],
            )
        raise RuntimeError("could not make a personal data key")

    async def for_read(
        self, conn: Conn | asyncpg.Pool, key_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, DataKey | None]:
        """The keys of `key_ids` (None: forgotten, or unreadable), from the cache where it
        has them, the rest in one query."""
        now = self._clock()
        found: dict[uuid.UUID, DataKey | None] = {}
        missing = []
        for key_id in set(key_ids):
            cached = self._cache.get(key_id)
            if cached is not None and cached[0] > now:
                found[key_id] = cached[1]
            else:
                missing.append(key_id)
        if missing:
            rows = await conn.fetch(
                "SELECT key_id, wrapped, master_id FROM eventgraph.personal_keys"
                " WHERE key_id = any($1::uuid[])",
                missing,
            )
            loaded = {row["key_id"]: self._unwrap(row) for row in rows}
            for key_id in missing:
                found[key_id] = loaded.get(key_id)
                self._remember(key_id, found[key_id])
        return found

    async def forget(self, conn: Conn, subject: str) -> bool:
        """Destroy `subject`'s key (in the caller's transaction); True if there was one."""
        key_id = await conn.fetchval(
            "DELETE FROM eventgraph.personal_keys WHERE subject = $1 RETURNING key_id", subject
        )
        if key_id is None:
            return False
        self._remember(key_id, None)
        return True

    def evict(self, key_id: uuid.UUID) -> None:
        self._cache.pop(key_id, None)

    async def rotate(self, conn: Conn, batch: int = 500) -> int:
        """Rewrap every data key not yet under the current master key; returns how many.
        Each batch commits on its own (a rotation interrupted resumes where it was); keys
        no master here can unwrap are left as they are, and counted out."""
        done = 0
        after = uuid.UUID(int=0)
        while True:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT subject, key_id, wrapped, master_id FROM eventgraph.personal_keys"
                    " WHERE master_id <> $1 AND key_id > $2 ORDER BY key_id LIMIT $3"
                    " FOR UPDATE SKIP LOCKED",
                    self.master.id,
                    after,
                    batch,
                )
                if not rows:
                    return done
                after = rows[-1]["key_id"]
                rewrapped = []
                for row in rows:
                    key = self._unwrap(row)
                    if key is not None:
                        rewrapped.append((row["key_id"], self.master.wrap(key.secret, key.id)))
                await conn.executemany(
                    "UPDATE eventgraph.personal_keys SET wrapped = $2, master_id = $3"
                    " WHERE key_id = $1",
                    [(key_id, wrapped, self.master.id) for key_id, wrapped in rewrapped],
                )
                done += len(rewrapped)

    async def seal_fields(
        self,
        conn: Conn,
        subject: str,
        event_id: uuid.UUID,
        data: Mapping[str, Any],
        fields: Iterable[str],
    ) -> dict[str, Any]:
        """`data` with each of `fields` that is not None sealed under `subject`'s key."""
        personal = [f for f in fields if data.get(f) is not None]
        if not personal:
            return dict(data)
        key = await self.for_write(conn, subject)
        return {
            name: seal(key, subject, event_id, value) if name in personal else value
            for name, value in data.items()
        }

    async def open_fields(
        self,
        conn: Conn | asyncpg.Pool,
        events: Iterable[tuple[uuid.UUID, Mapping[str, Any]]],
    ) -> list[dict[str, Any]]:
        """Each event's data (event id, data) with its envelopes opened, or None where the
        key is gone: one key query for them all."""
        batch = list(events)
        wanted = {
            key_id
            for _, data in batch
            for value in data.values()
            if is_envelope(value) and (key_id := envelope_key(value)) is not None
        }
        keys = await self.for_read(conn, wanted) if wanted else {}
        opened = []
        for event_id, data in batch:
            out = {}
            for name, value in data.items():
                if is_envelope(value):
                    key_id = envelope_key(value)
                    key = keys.get(key_id) if key_id is not None else None
                    out[name] = open_envelope(key, event_id, value)
                else:
                    out[name] = value
            opened.append(out)
        return opened


@dataclass(frozen=True)
class PersonalFields:
    """Which fields of an event type are personal, and whose: `subject` names the field that
    holds the person's id (a customer id), `fields` the ones sealed under that person's key."""

    subject: str
    fields: tuple[str, ...]


class PersonalData:
    """The event store's side of personal data: seals the personal fields of events going
    in (inside the append's transaction), opens them on the way out, or erases them where
    a reader must never see them (deciding a command: aggregate states, and so snapshots and
    the state cache, never hold personal data)."""

    def __init__(
        self,
        keys: PersonalKeys,
        fields: Mapping[str, PersonalFields],
        forgetting: Mapping[str, str] | None = None,
    ) -> None:
        self.keys = keys
        self.fields = dict(fields)
        self.forgetting = dict(forgetting or {})
        """Event types whose append destroys a subject's key, in the same transaction: the
        type, and the field naming the subject (`CustomerForgotten`: `customerId`)."""

    def needs_sealing(self, events: Iterable[tuple[str, NewEvent]]) -> bool:
        """True if appending `events` makes, uses or destroys a key (in one transaction)."""
        fields, forgetting = self.fields, self.forgetting
        for _, event in events:
            if event.type in forgetting:
                return True
            spec = fields.get(event.type)
            if spec is not None and any(event.data.get(f) is not None for f in spec.fields):
                return True
        return False

    async def seal(
        self, conn: Conn, events: Sequence[tuple[str, NewEvent]]
    ) -> list[tuple[str, NewEvent]]:
        """`events` with their personal fields sealed (in the caller's transaction on
        `conn`, which makes a subject's key on first use); a forgetting event destroys its
        subject's key there, before any later event of `events` makes a new one."""
        sealed = []
        for stream, event in events:
            forgets = self.forgetting.get(event.type)
            if forgets is not None:
                subject = event.data.get(forgets)
                if not isinstance(subject, str) or not subject:
                    raise InvalidEventError(f"{event.type} names no {forgets}")
                await self.keys.forget(conn, subject)
            spec = self.fields.get(event.type)
            if spec is not None and any(event.data.get(f) is not None for f in spec.fields):
                subject = event.data.get(spec.subject)
                if not isinstance(subject, str) or not subject:
                    raise InvalidEventError(
                        f"{event.type} carries personal data but no {spec.subject}"
                    )
                if any(is_envelope(event.data.get(f)) for f in spec.fields):
                    raise InvalidEventError(f"{event.type}: personal fields are sealed once")
                data = await self.keys.seal_fields(
                    conn, subject, event.event_id, event.data, spec.fields
                )
                event = replace(event, data=data)
            sealed.append((stream, event))
        return sealed

    def _sealed(self, event: RecordedEvent) -> bool:
        spec = self.fields.get(event.type)
        return spec is not None and any(is_envelope(event.data.get(f)) for f in spec.fields)

    async def open(
        self, conn: Conn | asyncpg.Pool, events: list[RecordedEvent]
    ) -> list[RecordedEvent]:
        """`events` with their personal fields opened, None where the key is gone."""
        at = [i for i, event in enumerate(events) if self._sealed(event)]
        if not at:
            return events
        opened = await self.keys.open_fields(
            conn, [(events[i].event_id, events[i].data) for i in at]
        )
        out = list(events)
        for i, data in zip(at, opened, strict=True):
            out[i] = replace(out[i], data=data)
        return out

    def erase(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """`events` with every sealed field None, without reading a key."""
        out = events
        for i, event in enumerate(events):
            if self._sealed(event):
                if out is events:
                    out = list(events)
                data = {k: None if is_envelope(v) else v for k, v in event.data.items()}
                out[i] = replace(event, data=data)
        return out
