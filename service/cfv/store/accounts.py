"""Users and their API keys: what the command line, the admin API and the tests share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cfv.gateway.auth import new_key
from cfv.store.database import Connection
from cfv.store.queries import query


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: ``secret`` is shown once and never stored."""

    id: int
    user_id: int
    prefix: str
    secret: str
    created_at: datetime
    expires_at: datetime | None


async def owner_user(connection: Connection, workspace_id: int) -> int:
    """The id of the workspace's administrator service account ('owner'), made if missing."""
    user_id = await connection.fetchval(query("owner_user"), workspace_id)
    assert user_id is not None
    return int(user_id)


async def issue_key(connection: Connection, workspace_id: int, *, user_id: int | None = None,
                    name: str | None = None, expires_at: datetime | None = None) -> IssuedKey:
    """Make a key for ``user_id`` (default: the workspace's owner service account)."""
    if user_id is None:
        user_id = await owner_user(connection, workspace_id)
    made = new_key()
    row = await connection.fetchrow(query("create_key"), workspace_id, user_id, made.prefix, made.digest,
                                    made.public_key, name, expires_at)
    assert row is not None
    return IssuedKey(row["id"], user_id, made.prefix, made.secret, row["created_at"], expires_at)
