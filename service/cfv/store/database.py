"""Connections to Postgres: pools and single connections with cfv's codecs."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import orjson


async def init_connection(connection: asyncpg.Connection[Any]) -> None:
    """Make jsonb values arrive as Python objects and leave as JSON, via orjson."""
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_dumps, decoder=orjson.loads, format="text"
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def create_pool(dsn: str, *, size: int = 10) -> asyncpg.Pool[Any]:
    """A pool whose connections have cfv's codecs."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=size, init=init_connection)
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    """One connection with cfv's codecs."""
    connection = await asyncpg.connect(dsn)
    await init_connection(connection)
    return connection


#: A connection of ours: a plain one, or one lent by a pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
