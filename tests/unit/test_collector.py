"""Full garbage collections run on their schedule, and the collector's settings come back."""

from __future__ import annotations

import asyncio
import gc

from support.collector import NEVER, ScheduledFullCollections


async def test_the_oldest_generation_waits_for_the_schedule() -> None:
    before = gc.get_threshold()
    collector = ScheduledFullCollections(every=0.2)
    collector.start()
    try:
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] == NEVER
        full = gc.get_stats()[2]["collections"]
        await asyncio.sleep(0.5)
        assert gc.get_stats()[2]["collections"] > full  # the scheduled one ran
    finally:
        await collector.stop()
    assert gc.get_threshold() == before
