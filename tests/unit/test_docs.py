"""docs/extending.md against the code: every file it names exists, and the registries it
says a feature is added to do hold the worked example (product reviews)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domain import review
from domain.registry import AGGREGATES
from projections import READ_MODELS, ratings
from schema import Mutation, Query, Subscription
from schema import reviews as review_api
from schema.features import FEATURES
from schema.sharing import SHARED

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "extending.md").read_text()


def test_every_file_the_guide_names_exists() -> None:
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.(?:py|md))`", GUIDE))
    assert len(named) > 15
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing


def test_the_registries_hold_the_worked_example() -> None:
    assert review.AGGREGATE in AGGREGATES
    assert ratings.READ_MODEL in READ_MODELS
    assert review_api.FEATURE in FEATURES
    fields = {
        name: {f.python_name for f in root.__strawberry_definition__.fields}
        for name, root in (("query", Query), ("mutation", Mutation), ("subscription", Subscription))
    }
    assert "product_rating" in fields["query"] and "post_review" in fields["mutation"]
    assert "product_rating" in fields["subscription"] and SHARED["productRating"] == "role"


def test_the_reaction_the_guide_walks_through_is_the_shops() -> None:
    from application.commands import Policy
    from application.low_stock import LowStock
    from application.shop import reactions

    assert "class LowStock:" in GUIDE and "`application/low_stock.py`" in GUIDE
    assert any(isinstance(r, LowStock) for r in reactions(Policy()))


FEATURES_GUIDED = {
    "the reviews feature": (("review", "reviews", "ratings"), {
        "domain/review.py", "application/reviews.py", "projections/ratings.py",
        "schema/reviews.py"}),
    "the wishlist": (("wishlist",), {
        "domain/wishlist.py", "application/wishlist.py", "projections/wishlist.py",
        "schema/wishlist.py"}),
}  # fmt: skip
"""Each worked example: the module names it is imported by, and its own modules."""


@pytest.mark.parametrize("feature", sorted(FEATURES_GUIDED))
def test_the_files_changed_outside_the_feature_are_as_few_as_the_guide_says(feature: str) -> None:
    """Outside its own modules, only the files the guide lists know the feature exists."""
    names, own = FEATURES_GUIDED[feature]
    listed = GUIDE.split(f"Files {feature} changed outside its own modules and tests:", 1)[1]
    outside = set(re.findall(r"`([a-z_/]+\.py)`", listed.split("\n\n", 1)[0]))
    mentions = re.compile(rf"^(?:from|import) [^\n]*\b(?:{'|'.join(names)})\b", re.MULTILINE)
    packages = ("support", "domain", "eventstore", "projections", "application", "schema",
                "transport", "eventgraph")  # fmt: skip
    knowing = {
        str(path.relative_to(ROOT))
        for package in packages
        for path in (ROOT / package).rglob("*.py")
        if mentions.search(path.read_text())
    }
    assert knowing - own == outside
    assert len(outside) <= 3


def test_the_guides_wishlist_is_the_shops() -> None:
    """Its read model within 120 lines on the kit, registered, and the guide's excerpts of
    its code are the code."""
    from domain import wishlist
    from projections import wishlist as wishlist_model
    from schema import wishlist as wishlist_api

    assert wishlist.AGGREGATE in AGGREGATES and wishlist_api.FEATURE in FEATURES
    assert wishlist_model.READ_MODEL in READ_MODELS
    source = ROOT / "projections" / "wishlist.py"
    assert len(source.read_text().splitlines()) <= 120
    for module in ("projections/wishlist.py", "schema/wishlist.py"):
        excerpt = GUIDE.split(f"# {module}\n", 1)[1].split("```", 1)[0]
        code = " ".join((ROOT / module).read_text().split())
        for line in excerpt.strip().splitlines():
            assert " ".join(line.split()) in code, (module, line)
