"""Random (version 4) UUIDs drawn from the OS's secure source in blocks: one `getrandom`
call per 256 ids instead of one per id, on the append path where every event needs one."""

from __future__ import annotations

import os
import uuid

_BLOCK = 256
_buffer = b""
_offset = 0


def uuid4() -> uuid.UUID:
    global _buffer, _offset
    if _offset >= len(_buffer):
        _buffer, _offset = os.urandom(16 * _BLOCK), 0
    chunk = _buffer[_offset : _offset + 16]
    _offset += 16
    return uuid.UUID(bytes=chunk, version=4)
