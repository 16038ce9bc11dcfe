"""Given events, when a command, then events or an error: the helper every decider test
folds its history with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def given(evolve: Callable[[Any, Any], Any], initial: Any, *events: Any) -> Any:
    """The state after `events`, folded from `initial` with `evolve`."""
    state = initial
    for event in events:
        state = evolve(state, event)
    return state
