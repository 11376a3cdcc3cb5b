"""Rate-limit leases against the real Redis: gateways take tokens in chunks and still share one budget, exactly
to within a chunk each, and a lease ends with its window."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from cfv.gateway.limits import WRITES, Budget, RateLimiter, redis_client
from cfv.settings import Settings


def leasing(**update: Any) -> Settings:
    return Settings(rate_limit_prefix=f"cfvtest:{uuid.uuid4().hex}", rate_limit_lease=10, **update)


class CountingLimiter(RateLimiter):
    """A limiter that counts its round trips to Redis."""

    trips = 0

    async def _run(self, *args: Any, **kwargs: Any) -> tuple[int, ...] | None:
        CountingLimiter.trips += 1
        return await super()._run(*args, **kwargs)


async def test_gateways_share_a_budget_to_within_a_chunk_each() -> None:
    settings = leasing(rate_limit_writes=1000)  # a chunk of 10
    one, two = CountingLimiter(redis_client(settings), settings), CountingLimiter(redis_client(settings), settings)
    try:
        CountingLimiter.trips = 0
        answers: dict[RateLimiter, list[Budget]] = {one: [], two: []}
        for n in range(1100):
            limiter = one if n % 3 else two
            budget = await limiter.hit(7, WRITES, "10.0.0.1")
            assert budget is not None
            answers[limiter].append(budget)
        allowed = sum(b.allowed for found in answers.values() for b in found)
        assert 1000 - 2 * 10 <= allowed <= 1000
        assert CountingLimiter.trips <= 1100 // 10 + 4  # a round trip per chunk, not per request
        for found in answers.values():  # each gateway's remaining counts down, never repeating a token
            remaining = [b.remaining for b in found if b.allowed]
            assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(remaining)
        # Spent: refused without asking Redis again.
        before = CountingLimiter.trips
        spent = await one.hit(7, WRITES, "10.0.0.1")
        assert spent is not None and not spent.allowed and CountingLimiter.trips == before
    finally:
        await one.close()
        await two.close()


async def test_concurrent_requests_share_one_lease_request() -> None:
    settings = leasing(rate_limit_writes=5000)
    limiter = RateLimiter(redis_client(settings), settings)
    try:
        budgets = await asyncio.gather(*(limiter.hit(8, WRITES, "10.0.0.1") for _ in range(40)))
        remaining = sorted(b.remaining for b in budgets if b is not None)
        assert remaining == list(range(5000 - 40, 5000))  # 40 distinct tokens: 4 chunks, none wasted
    finally:
        await limiter.close()


async def test_a_lease_ends_with_its_window() -> None:
    settings = leasing(rate_limit_writes=1000, rate_limit_window=1.0)
    limiter = RateLimiter(redis_client(settings), settings)
    try:
        first = await limiter.hit(9, WRITES, "10.0.0.1")
        assert first is not None and first.remaining == 999
        await asyncio.sleep(1.2)
        again = await limiter.hit(9, WRITES, "10.0.0.1")  # a new window: the old lease's tokens are gone
        assert again is not None and again.remaining == 999
    finally:
        await limiter.close()
