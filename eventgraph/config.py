"""Configuration from the environment: the names are part of the operations contract."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from application.commands import Policy
from domain.values import MAX_STOCK
from eventstore.personal import MasterKey, MasterKeyError, new_master_key_text
from support.logs import FORMATS
from transport.origins import Hosts

MIN_SECRET_BYTES = 32


class ConfigError(Exception):
    """A setting that cannot be used: the process refuses to start, saying which."""


def _publish_url(value: str | None) -> str | None:
    if value is not None and urlsplit(value).scheme not in ("amqp", "amqps"):
        raise ConfigError("EVENTGRAPH_PUBLISH_URL must be an amqp:// or amqps:// URL")
    return value


def _limit(env: Mapping[str, str], name: str, default: int) -> int:
    """A per-user limit: a whole number, 0 for none."""
    text = env.get(name) or str(default)
    if not text.isascii() or not text.isdigit():
        raise ConfigError(f"{name} must be a whole number (0: no limit), not {text!r}")
    return int(text)


def _publish_key(env: Mapping[str, str]) -> str | None:
    """A forged event signed with a guessable key is as good as an unsigned one: at least 32
    bytes; and in production (a configured JWT secret) a relay needs one configured, since
    its consumers, elsewhere, cannot read a key generated into this machine's data dir."""
    key = env.get("EVENTGRAPH_PUBLISH_KEY") or None
    if key is not None and len(key.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"EVENTGRAPH_PUBLISH_KEY must be at least {MIN_SECRET_BYTES} bytes; generate"
            " one: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    if key is None and env.get("EVENTGRAPH_PUBLISH_URL") and env.get("EVENTGRAPH_JWT_SECRET"):
        raise ConfigError(
            "EVENTGRAPH_PUBLISH_KEY must be set with EVENTGRAPH_PUBLISH_URL (the relay signs"
            " every message with it; consumers verify it)"
        )
    return key


def _master_key(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_master_keys(value)
        except MasterKeyError as exc:
            raise ConfigError(str(exc)) from None
    return value


def parse_master_keys(value: str) -> tuple[MasterKey, ...]:
    """`key[,older,...]`: the first wraps new data keys; the others still unwrap theirs."""
    keys = tuple(MasterKey.from_text(part) for part in value.split(",") if part.strip())
    if not keys:
        raise MasterKeyError("EVENTGRAPH_MASTER_KEY is empty; generate one: eventgraph master-key")
    return keys


def _allowed_hosts(value: str | None) -> str | None:
    try:
        Hosts.parse(value, development=False)
    except ValueError as exc:
        raise ConfigError(f"EVENTGRAPH_ALLOWED_HOSTS: {exc}") from None
    return value


def _number(env: Mapping[str, str], name: str, default: str, *, whole: bool = False) -> float:
    """A numeric setting, or a ConfigError naming it: never a traceback for junk."""
    text = env.get(name) or default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name} must be {kind}, not {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also NaN
        raise ConfigError(f"{name} must be a finite number, zero or more, not {text!r}")
    return value


def _log_format(value: str) -> str:
    if value not in FORMATS:
        raise ConfigError(
            f"EVENTGRAPH_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}"
        )
    return value


MAX_PAYMENT_WINDOW = 366 * 24 * 3600


def _payment_window(env: Mapping[str, str]) -> float:
    """Seconds a placed order waits for its payment: 0 for no deadline, at most a year."""
    seconds = _number(env, "EVENTGRAPH_PAYMENT_WINDOW_SECONDS", "1800")
    if seconds > MAX_PAYMENT_WINDOW or 0 < seconds < 1:
        raise ConfigError(
            f"EVENTGRAPH_PAYMENT_WINDOW_SECONDS must be from 1 to {MAX_PAYMENT_WINDOW} (a year),"
            " or 0 to turn deadlines off"
        )
    return seconds


def _threshold(env: Mapping[str, str]) -> int:
    """Available stock below which a product is flagged: 0 (off) to the most stock there is."""
    threshold = int(_number(env, "EVENTGRAPH_LOW_STOCK_THRESHOLD", "5", whole=True))
    if threshold > MAX_STOCK:
        raise ConfigError(f"EVENTGRAPH_LOW_STOCK_THRESHOLD must be at most {MAX_STOCK}")
    return threshold


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    jwt_secret: str | None
    broadcast_url: str
    read_wait_seconds: float
    max_lag_events: int
    position_poll_seconds: float
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    max_connections_per_user: int = 64
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 10000
    max_connections_per_ip: int = 256
    cors_origins: str | None = None
    allowed_hosts: str | None = None
    log_format: str = "text"
    metrics_token: str | None = None
    publish_url: str | None = None
    read_database_url: str | None = None
    publish_key: str | None = None
    max_operations_per_user: int = 8
    max_subscriptions_per_user: int = 256
    payment_window_seconds: float = 1800.0
    low_stock_threshold: int = 5
    master_key: str | None = None
    """EVENTGRAPH_MASTER_KEY: the current master key, then any earlier ones still being
    rotated away from, comma-separated (see `resolve_master_keys`)."""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("EVENTGRAPH_DATA_DIR", "./.eventgraph")).expanduser(),
            jwt_secret=env.get("EVENTGRAPH_JWT_SECRET") or None,
            broadcast_url=env.get("EVENTGRAPH_BROADCAST_URL", "memory://"),
            read_wait_seconds=_number(env, "EVENTGRAPH_READ_WAIT_SECONDS", "5"),
            max_lag_events=int(_number(env, "EVENTGRAPH_MAX_LAG_EVENTS", "10000", whole=True)),
            position_poll_seconds=_number(env, "EVENTGRAPH_POSITION_POLL_SECONDS", "0.5"),
            jwt_audience=env.get("EVENTGRAPH_JWT_AUDIENCE") or None,
            jwt_issuer=env.get("EVENTGRAPH_JWT_ISSUER") or None,
            max_connections_per_user=int(
                _number(env, "EVENTGRAPH_MAX_CONNECTIONS_PER_USER", "64", whole=True)
            ),
            header_timeout_seconds=_number(env, "EVENTGRAPH_HEADER_TIMEOUT_SECONDS", "10"),
            body_timeout_seconds=_number(env, "EVENTGRAPH_BODY_TIMEOUT_SECONDS", "30"),
            max_connections=int(_number(env, "EVENTGRAPH_MAX_CONNECTIONS", "10000", whole=True)),
            max_connections_per_ip=int(
                _number(env, "EVENTGRAPH_MAX_CONNECTIONS_PER_IP", "256", whole=True)
            ),
            cors_origins=env.get("EVENTGRAPH_CORS_ORIGINS") or None,
            allowed_hosts=_allowed_hosts(env.get("EVENTGRAPH_ALLOWED_HOSTS") or None),
            log_format=_log_format(env.get("EVENTGRAPH_LOG_FORMAT") or "text"),
            metrics_token=env.get("EVENTGRAPH_METRICS_TOKEN") or None,
            publish_url=_publish_url(env.get("EVENTGRAPH_PUBLISH_URL") or None),
            read_database_url=env.get("EVENTGRAPH_READ_DATABASE_URL") or None,
            publish_key=_publish_key(env),
            max_operations_per_user=_limit(env, "EVENTGRAPH_MAX_OPERATIONS_PER_USER", 8),
            max_subscriptions_per_user=_limit(env, "EVENTGRAPH_MAX_SUBSCRIPTIONS_PER_USER", 256),
            payment_window_seconds=_payment_window(env),
            low_stock_threshold=_threshold(env),
            master_key=_master_key(env.get("EVENTGRAPH_MASTER_KEY") or None),
        )

    def policy(self) -> Policy:
        """The shop's settings that commands and reactions decide by."""
        window = self.payment_window_seconds
        return Policy(
            payment_window=timedelta(seconds=window) if window else None,
            low_stock_threshold=self.low_stock_threshold,
        )

    def resolve_jwt_secret(self) -> tuple[str, bool]:
        """The signing secret, and whether it was generated for development. Without
        EVENTGRAPH_JWT_SECRET, one secret is generated once and kept in the data directory so
        that `serve` and `token` agree. A configured secret shorter than 32 bytes is refused:
        an HS256 key that short can be found by brute force from any one token."""
        if self.jwt_secret:
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(
                    f"EVENTGRAPH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes; generate"
                    " one: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
            return self.jwt_secret, False
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        return path.read_text().strip(), True

    def resolve_master_keys(self) -> tuple[MasterKey, ...]:
        """The master keys that wrap personal-data keys (eventstore/personal.py). Without
        EVENTGRAPH_MASTER_KEY, one is generated once into the data directory, for development:
        replicas, and any process run from another directory, need the configured one, or
        they cannot read each other's personal data."""
        if self.master_key:
            return parse_master_keys(self.master_key)
        path = self.data_dir / "master-key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(new_master_key_text())
        return parse_master_keys(path.read_text().strip())

    def resolve_publish_key(self) -> bytes:
        """The key the relay signs each message with (consumers verify it). Without
        EVENTGRAPH_PUBLISH_KEY (development only: `from_env` refuses a publish URL without it
        when EVENTGRAPH_JWT_SECRET is set), generated once into the data directory."""
        if self.publish_key:
            return self.publish_key.encode()
        path = self.data_dir / "publish-key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()
