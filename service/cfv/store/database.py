"""Connections to Postgres: pools and single connections with cfv's codecs."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import orjson

from cfv.store.queries import query


async def init_connection(connection: asyncpg.Connection[Any]) -> None:
    """Make jsonb values arrive as Python objects and leave as JSON, via orjson."""
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# The worker's and the relay's statements run thousands of times with arrays of every length. Postgres plans a
# prepared statement anew at each execution for as long as it guesses a custom plan cheaper than the generic
# one, and for these it always guessed so: planning cost more than running (0.7 ms of 1.2 ms for a batch's
# read). Their queries are written so that the generic plan is the right one (keys are looked up one index
# probe at a time), so those processes use it from the start.
GENERIC_PLANS = {"plan_cache_mode": "force_generic_plan"}


async def create_pool(dsn: str, *, size: int = 10, settings: dict[str, str] | None = None,
                      transactions_only: bool = False) -> asyncpg.Pool[Any]:
    """A pool whose connections have cfv's codecs (and the given server ``settings``).

    ``transactions_only``: its users only ever run whole transactions and leave nothing behind on the session
    (no listeners, session locks, cursors or settings), as the worker does: a connection goes back to the pool
    without asyncpg's reset (``RESET ALL``, ``UNLISTEN *``...: a round trip per use for nothing).
    """
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=init_connection,
                                     server_settings=settings, reset=_no_reset if transactions_only else None)
    assert pool is not None
    return pool


async def _no_reset(_: asyncpg.Connection[Any]) -> None:
    return None  # asyncpg still rolls back a transaction left open (Connection._reset), without a round trip


async def connect(dsn: str, *, settings: dict[str, str] | None = None) -> asyncpg.Connection[Any]:
    """One connection with cfv's codecs (and the given server ``settings``)."""
    connection = await asyncpg.connect(dsn, server_settings=settings)
    await init_connection(connection)
    return connection


async def ping(pool: asyncpg.Pool[Any]) -> None:
    """Raise unless the pool lends a connection that answers."""
    async with pool.acquire() as connection:
        await connection.fetchval(query("ping"))


#: A connection of ours: a plain one, or one lent by a pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
#: What a one-statement read or write may run on: a connection, or the pool (which lends one for it).
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any] | asyncpg.Pool[Any]"
