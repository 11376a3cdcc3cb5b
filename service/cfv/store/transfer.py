"""What ``cfv import values`` and ``cfv export values`` read from PostgreSQL (see :mod:`cfv.transfer`)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from cfv.domain.changes import KeyState
from cfv.domain.fields import FieldDefinition
from cfv.domain.users import KnownUsers
from cfv.domain.values import JSON
from cfv.domain.writes import ValueKey
from cfv.store import batches
from cfv.store.database import Connection
from cfv.store.queries import query


async def workspace_id(connection: Connection, slug: str) -> int | None:
    """The id of workspace ``slug``, if it exists."""
    found: int | None = await connection.fetchval(query("workspace_id"), slug)
    return found


async def key_workspace(connection: Connection, api_key: str) -> str | None:
    """The slug of the workspace an API key belongs to (None: no such key). Only its hash is sent."""
    row = await connection.fetchrow(query("principal_by_key_hash"), hashlib.sha256(api_key.encode()).digest())
    return None if row is None else str(row["slug"])


async def field_definitions(connection: Connection, workspace: int) -> dict[int, FieldDefinition]:
    """The workspace's live fields by id, as the worker's validation sees them."""
    rows = await connection.fetch(query("workspace_field_definitions"), workspace)
    return {row["id"]: batches.definition_from_row(tuple(row.values())) for row in rows}


async def users_and_states(connection: Connection, workspace: int, named: Sequence[tuple[int, int | str]],
                           keys: Sequence[ValueKey]) -> tuple[KnownUsers, dict[ValueKey, KeyState]]:
    """The users that user relations name (``named``, as :func:`cfv.domain.users.users_named` lists them) and the
    current state of ``keys`` (whether a value already names a deactivated user)."""
    if not named:
        return {}, {}
    users = await batches.users_named(connection, named)
    rows = await batches.key_states(connection, [(workspace, key) for key in keys])
    return users, batches.states_of(rows).get(workspace, {})


@dataclass(frozen=True, slots=True)
class StoredValue:
    """One current value, as exported."""

    subject_type: str
    subject_id: str
    custom_field_id: int
    custom_field_name: str
    value: JSON


async def current_values(connection: Connection, workspace: int, subject_type: str | None, *,
                         chunk: int = 1000) -> AsyncIterator[list[StoredValue]]:
    """The workspace's current values, ``chunk`` at a time, from a server-side cursor in one read-only snapshot:
    memory stays the same whatever the number of values. ``connection`` must be a plain one (not a pool's)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        cursor = await connection.cursor(query("export_values"), workspace, subject_type)
        while rows := await cursor.fetch(chunk):
            yield [StoredValue(r["subject_type"], r["subject_id"], r["custom_field_id"], r["custom_field_name"],
                               r["value"]) for r in rows]
