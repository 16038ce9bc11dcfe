"""Configuration from the environment: the names are part of the operations contract."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    data_dir: Path
    jwt_secret: str | None
    broadcast_url: str
    read_wait_seconds: float
    max_lag_events: int
    position_poll_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("EVENTGRAPH_DATA_DIR", "./.eventgraph")).expanduser(),
            jwt_secret=env.get("EVENTGRAPH_JWT_SECRET") or None,
            broadcast_url=env.get("EVENTGRAPH_BROADCAST_URL", "memory://"),
            read_wait_seconds=float(env.get("EVENTGRAPH_READ_WAIT_SECONDS", "5")),
            max_lag_events=int(env.get("EVENTGRAPH_MAX_LAG_EVENTS", "10000")),
            position_poll_seconds=float(env.get("EVENTGRAPH_POSITION_POLL_SECONDS", "0.5")),
        )

    def resolve_jwt_secret(self) -> tuple[str, bool]:
        """The signing secret, and whether it was generated for development. Without
        EVENTGRAPH_JWT_SECRET, one secret is generated once and kept in the data directory so
        that `serve` and `token` agree."""
        if self.jwt_secret:
            return self.jwt_secret, False
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        return path.read_text().strip(), True
