"""Failures that pass: what a process waits out and retries rather than reports as a bad request."""

from __future__ import annotations

import asyncio
import random

import asyncpg

#: Lost or refused connections, deadlocks, serialisation failures: the same work may well succeed later.
#: asyncpg's InternalClientError is what a connection lost at the wrong moment raises ("cannot switch to state
#: ...; another operation is in progress", from a pool's reset of it): the database is away, not broken.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncio.TimeoutError,
)


class Backoff:
    """Growing pauses between retries: ``first`` seconds, doubling up to ``ceiling``, each pause jittered.

    A pause lasts between half the current delay and the whole of it, at random ("equal jitter"): processes
    that lost the same dependency at the same moment would otherwise all retry in lockstep, and meet it again
    all at once when it comes back.
    """

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.delay = first
        self._ceiling = ceiling

    def jittered(self) -> float:
        """How long the next pause lasts."""
        return self.delay / 2 + random.uniform(0, self.delay / 2)  # spreads retries; no secret

    def next(self) -> float:
        """The next pause (about the current delay); the one after it will be longer."""
        pause = self.jittered()
        self.delay = min(self.delay * 2, self._ceiling)
        return pause

    async def pause(self) -> None:
        """Sleep (about) the current delay, then lengthen the next one."""
        await asyncio.sleep(self.next())
