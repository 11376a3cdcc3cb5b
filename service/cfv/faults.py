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
