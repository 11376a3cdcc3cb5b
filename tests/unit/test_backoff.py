"""Retry pauses grow, and stop growing at their ceiling."""

from __future__ import annotations

from cfv.faults import Backoff


async def test_delays_double_up_to_the_ceiling() -> None:
    backoff = Backoff(first=0.001, ceiling=0.004)
    seen = []
    for _ in range(4):
        seen.append(backoff.delay)
        await backoff.pause()
    assert seen == [0.001, 0.002, 0.004, 0.004]
