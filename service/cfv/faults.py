"""Failures that pass: what a process waits out and retries rather than reports as a bad request."""

from __future__ import annotations

import asyncio

import asyncpg

#: Lost or refused connections, deadlocks, serialisation failures: the same work may well succeed later.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncio.TimeoutError,
)


class Backoff:
    """Growing pauses between retries: ``first`` seconds, doubling up to ``ceiling``."""

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.delay = first
        self._ceiling = ceiling

    async def pause(self) -> None:
        """Sleep the current delay, then lengthen the next one."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self._ceiling)
