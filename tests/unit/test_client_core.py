"""The browser client core (`web/clients/eventgraph.js`) under Node's test runner, against a
scripted server: `web/clients/eventgraph.test.mjs` (token expiry by the server's clock,
failing refreshes, feeds resent with `after`, the newest view per field)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).parents[2] / "web"


def test_the_client_core_passes_its_node_tests() -> None:
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules" / "graphql-ws").exists():
        reason = "needs Node.js and npm ci in web/"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [node, "--test", "clients/"], cwd=WEB, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout
