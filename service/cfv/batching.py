"""Coalescing concurrent calls into batches: one round trip for whatever arrived while the last was in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Calls made while a batch is in flight wait, then go together as the next batch.

    Nothing waits when idle: the first call goes at once, alone. Under load each batch carries everything that
    arrived during the previous one, so a round trip's cost is shared by as many calls as the load brings.
    ``flush`` receives the items of a batch and returns their results in order; if it raises, every call of
    the batch raises.
    """

    def __init__(self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], *, limit: int = 1000) -> None:
        self._flush = flush
        self._limit = limit
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False

    async def __call__(self, item: T) -> R:
        """``item``'s result, from the batch it joins."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._busy:
            self._busy = True
            asyncio.create_task(self._drain())  # noqa: RUF006 (kept by the loop until it ends)
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:self._limit], self._waiting[self._limit:]
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._busy = False
