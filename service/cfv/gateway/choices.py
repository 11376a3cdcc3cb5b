"""Deleting a choice (a Kantata choice, a Plane option): refused while a value holds it.

Removing a choice silently from values would change data nobody asked to change; refusing says what to do
instead (change or delete those values first). The check and the deletion hold the workspace's apply lock,
the one the worker takes for each batch, so no write can slip the choice into a value in between.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cfv.gateway.errors import ApiError, not_found
from cfv.store.queries import query


async def delete_choice(pool: asyncpg.Pool[Any], workspace_id: int, field_id: int, choice_id: int) -> None:
    """Delete the choice, or raise 409 if a current value holds it (404 if it is gone)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(query("lock_workspace"), workspace_id)
        if await connection.fetchval(query("choice_in_use"), field_id, choice_id):
            raise ApiError.one(409, "conflict", "values hold this choice; change or delete them first, or "
                               "deactivate the choice so it can no longer be chosen", "id")
        if await connection.fetchval(query("delete_choice"), choice_id) is None:
            raise not_found("choice")
