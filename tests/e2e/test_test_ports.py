"""The test kit's ports: EVENTGRAPH_TEST_PORTS confines the servers the tests start to a
range (runs side by side on one machine kept apart); unset, the system picks."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.kit.server import PORTS, free_port, port_range, start_server, stop_server


@pytest.mark.parametrize(
    ("value", "ports"),
    [
        ("20000-20999", range(20000, 21000)),
        (" 31000-31000 ", range(31000, 31001)),
        ("1-65535", range(1, 65536)),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_the_port_range_is_read_as_low_dash_high_both_included(
    value: str | None, ports: range | None
) -> None:
    assert port_range(value) == ports


@pytest.mark.parametrize(
    "value", ["20000", "20000-", "-20000", "a-b", "20999-20000", "0-10", "1-65536", "1-2-3"]
)
def test_a_port_range_that_cannot_be_used_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=PORTS):
        port_range(value)


def _a_range() -> range:
    """The range the run was given, or a window of free ports the system offers."""
    given = port_range(os.environ.get(PORTS))
    if given is not None:
        return given
    start = free_port()
    return range(start, min(start + 50, 65_536))


def test_free_ports_come_from_the_range_each_once_while_others_are_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _a_range()
    monkeypatch.setenv(PORTS, f"{window.start}-{window.stop - 1}")
    handed = [free_port() for _ in range(3)]
    assert all(port in window for port in handed), (handed, window)
    assert len(set(handed)) == len(handed), "no port handed out twice while others are free"


def test_a_server_started_by_the_kit_listens_inside_the_range(
    monkeypatch: pytest.MonkeyPatch, server_database_url: str, tmp_path: Path
) -> None:
    window = _a_range()
    monkeypatch.setenv(PORTS, f"{window.start}-{window.stop - 1}")
    server = start_server(server_database_url, tmp_path)
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert port in window, (port, window)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        stop_server(server)
