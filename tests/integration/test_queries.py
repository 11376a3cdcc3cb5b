"""Every named query in ``store/sql/*.sql`` prepares against the migrated schema.

Preparing parses, plans and type-checks a statement without running it, so a typo, an unknown column or a
parameter whose type cannot be inferred fails here rather than on the first request that uses the query.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from cfv.store.queries import all_names, query


async def test_every_named_query_prepares(db: asyncpg.Connection[Any]) -> None:
    names = all_names()
    assert names
    failures = {}
    for name in names:
        try:
            await db.prepare(query(name))
        except asyncpg.PostgresError as error:
            failures[name] = f"{type(error).__name__}: {error}"
    assert not failures, "queries that do not prepare:\n" + "\n".join(f"  {n}: {e}" for n, e in failures.items())
