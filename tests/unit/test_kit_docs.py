"""docs/extending.md's kit examples are the code: every line of a Python block that starts
with `# <file>` is a line of that file (or `...`, what the guide leaves out), so the guide
cannot drift from what runs."""

from __future__ import annotations

import re
from pathlib import Path

from projections import READ_MODELS, sales
from projections.joined import JoinedTopic
from projections.kit import TableProjection
from tests.kit import bought

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "extending.md").read_text()
BLOCKS = re.findall(r"```python\n# ([a-z_/]+\.py)\n(.*?)```", GUIDE, re.DOTALL)


def code(line: str) -> str:
    """A line without its indentation and its trailing comment."""
    return line.split("  # ")[0].strip()


def test_every_line_of_the_guides_kit_examples_is_in_the_file_it_names() -> None:
    named = {path for path, _ in BLOCKS}
    assert {"projections/sales.py", "tests/kit/bought.py"} <= named
    for path, block in BLOCKS:
        source = {code(line) for line in (ROOT / path).read_text().splitlines()}
        for line in block.splitlines():
            if code(line) not in ("...", "...,"):  # what the guide leaves out
                assert code(line) in source, f"{path}: {line!r}"


def test_the_guides_examples_are_a_registered_kit_projection_and_a_joined_topic() -> None:
    assert isinstance(sales.READ_MODEL.projection, TableProjection)
    assert sales.READ_MODEL in READ_MODELS
    assert isinstance(bought.BY_CUSTOMER, JoinedTopic)
    assert bought.READ_MODEL not in READ_MODELS  # a test read model, never registered
