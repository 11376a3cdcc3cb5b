"""Coalescing: the first call goes alone, calls made meanwhile go together, results and errors reach each."""

from __future__ import annotations

import asyncio

import pytest
from cfv.batching import Coalescer


async def test_calls_made_while_a_batch_is_in_flight_go_together_in_order() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        await release.wait()
        return [item * 10 for item in items]

    coalesce: Coalescer[int, int] = Coalescer(flush)
    first = asyncio.create_task(coalesce(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalesce(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    release.set()
    assert [await first, *[await t for t in rest]] == [10, 20, 30, 40, 50]
    assert batches == [[1], [2, 3, 4, 5]]


async def test_a_failed_batch_fails_each_of_its_calls_and_the_next_batch_goes_on() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 2 in items:
            raise ValueError("refused")
        return items

    coalesce: Coalescer[int, int] = Coalescer(flush)
    one = asyncio.create_task(coalesce(1))
    await asyncio.sleep(0)
    two, three = asyncio.create_task(coalesce(2)), asyncio.create_task(coalesce(3))
    assert await one == 1
    for failed in (two, three):
        with pytest.raises(ValueError, match="refused"):
            await failed
    assert await coalesce(4) == 4


async def test_batches_hold_at_most_the_limit() -> None:
    sizes: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return items

    coalesce: Coalescer[int, int] = Coalescer(flush, limit=3)
    assert await asyncio.gather(*(coalesce(n) for n in range(8))) == list(range(8))
    assert max(sizes) <= 3 and sum(sizes) == 8
