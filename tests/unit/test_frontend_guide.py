"""docs/frontend.md runs as printed: every module it prints is the file of that name, byte
for byte (the files the browser tests and the console load), every module it imports is one
it prints or a package it installs, at the versions web/package.json pins."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "frontend.md").read_text()
PRINTED = dict(re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```\n", GUIDE, re.DOTALL))


def test_every_printed_module_is_the_file_the_tests_run() -> None:
    assert {"web/clients/eventgraph.js", "web/clients/apollo.js", "web/clients/urql.js"} <= set(
        PRINTED
    )
    for path, text in PRINTED.items():
        assert (ROOT / path).read_text() == text, f"{path} differs from docs/frontend.md"


def test_every_import_is_printed_or_installed_at_the_pinned_version() -> None:
    pinned = json.loads((ROOT / "web" / "package.json").read_text())["devDependencies"]
    installs = dict(re.findall(r"(@?[a-z][\w./-]*?)@(\d[\w.-]*)", GUIDE.split("## Connect")[0]))
    for name, version in installs.items():
        assert pinned.get(name) == version, (
            f"{name}@{version}: web/package.json pins {pinned.get(name)}"
        )
    printed = {Path(path).name for path in PRINTED}
    for specifier in set(re.findall(r'from "([^"]+)"', GUIDE)):
        if specifier.startswith("./"):
            assert Path(specifier).name in printed, f"{specifier} is imported but not printed"
        elif not specifier.startswith("@graphql-codegen/"):
            package = "/".join(specifier.split("/")[: 2 if specifier.startswith("@") else 1])
            assert package in installs, f"{package} is imported but not in the install lines"
