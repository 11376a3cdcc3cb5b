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


def test_pauses_are_jittered_between_half_and_the_whole_delay() -> None:
    backoff = Backoff(first=1.0)
    pauses = [backoff.jittered() for _ in range(200)]
    assert all(0.5 <= pause <= 1.0 for pause in pauses)
    assert len(set(pauses)) > 100  # spread, not lockstep
    assert min(pauses) < 0.6 and max(pauses) > 0.9
