"""A minimal HTTP/1.1 keep-alive client for load generation: httpx costs more CPU per
request than the server under test, on a 2-core machine that would measure the client."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, base_url: str) -> Connection:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    async def post_json(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        payload = json.dumps(body).encode()
        return await self.request("POST", path, payload, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return await self.request("GET", path, b"", headers or {})

    def encode(self, method: str, path: str, payload: bytes, headers: dict[str, str]) -> bytes:
        """A whole request, to prepare once and send many times with `send_raw`."""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
            + (
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                if payload
                else ""
            )
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        )
        return head.encode() + payload

    async def request(
        self, method: str, path: str, payload: bytes, headers: dict[str, str]
    ) -> tuple[int, Any]:
        status, body = await self.send_raw(self.encode(method, path, payload, headers))
        return status, json.loads(body)

    async def send_raw(self, request: bytes) -> tuple[int, bytes]:
        self._writer.write(request)
        status_line = await self._reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
