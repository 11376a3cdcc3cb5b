"""The event log, read and pruned: every change event keeps its place (``position``, per workspace, strictly
increasing in commit order) for ``CFV_EVENT_RETENTION``. Workers write it (:mod:`cfv.store.batches`); the relay
publishes it and prunes it (and the operations and idempotency records, by their own retentions); the replay API
and ``cfv events`` read it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from cfv.contracts import OUTBOX_CHANNEL
from cfv.store.database import Connection, Executor
from cfv.store.queries import query

#: How many rows of the log one page looks at, per event it may answer: a filter that matches little cannot make
#: a request read the whole log (the page's ``next_after`` says how far it looked).
SCAN_FACTOR = 10


@dataclass(frozen=True, slots=True)
class Page:
    """Events after a position, as stored (CloudEvents' JSON text), and where the next page starts."""

    events: list[str]
    next_after: int


@dataclass(frozen=True, slots=True)
class Bounds:
    """The oldest and newest positions a workspace's log keeps (None, None: none)."""

    oldest: int | None
    newest: int | None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the log keeps it."""

    position: int
    id: str
    type: str
    routing_key: str
    text: str


async def read_page(connection: Connection, *, workspace_id: int, after: int, limit: int, user_id: int,
                    account_role: str, types: Sequence[str] | None = None, subject_type: str | None = None,
                    field_ids: Sequence[int] | None = None) -> Page:
    """The events after ``after`` that the user may read (each field's read_access), filtered, at most ``limit``,
    in position order."""
    rows = await connection.fetch(query("events_page"), workspace_id, after, limit, limit * SCAN_FACTOR,
                                  list(types) if types is not None else None, subject_type,
                                  list(field_ids) if field_ids is not None else None, user_id, account_role)
    shown = [r for r in rows if r["position"] is not None]
    if len(shown) == limit:
        next_after = shown[-1]["position"]
    else:
        next_after = max(after, rows[0]["last_seen"] or after) if rows else after
    return Page([r["event"] for r in shown], next_after)


async def bounds(connection: Connection, *, workspace_id: int) -> Bounds:
    """The positions the workspace's log keeps."""
    row = await connection.fetchrow(query("event_log_bounds"), workspace_id)
    assert row is not None
    return Bounds(row["oldest"], row["newest"])


async def stored_after(connection: Connection, *, workspace_id: int, after: int, limit: int,
                       types: Sequence[str] | None = None) -> list[StoredEvent]:
    """The stored events after ``after``, as they are (no access filter: for the operator), at most ``limit``."""
    rows = await connection.fetch(query("event_log_after"), workspace_id, after, limit,
                                  list(types) if types is not None else None)
    return [StoredEvent(r["position"], r["event_id"], r["type"], r["routing_key"], r["event"]) for r in rows]


async def head(connection: Connection, *, workspace_id: int) -> tuple[int, datetime]:
    """The last position of the workspace's log (0: none) and the transaction's time; call holding the
    workspace's lock, so that the positions written after it follow commit order."""
    row = await connection.fetchrow(query("event_log_head"), workspace_id)
    assert row is not None
    return row["last"], row["now"]


async def append(connection: Connection, *, workspace_id: int, events: Sequence[StoredEvent]) -> None:
    """Write ``events`` (positions after :func:`head`'s) to the workspace's log, and have the relay told at commit."""
    rows = [[e.position, e.id, e.type, e.routing_key, e.text] for e in events]
    await connection.fetchval(query("append_events"), workspace_id, orjson.dumps(rows).decode(), OUTBOX_CHANNEL)


async def prune(connection: Connection, *, older_than: float, per_workspace: int) -> int:
    """Delete published events older than ``older_than`` seconds, at most ``per_workspace`` per workspace, never
    the newest of a workspace; return how many went."""
    status = await connection.execute(query("prune_events"), older_than, per_workspace)
    return int(status.split()[-1])


async def prune_idempotency_keys(connection: Connection, *, older_than: float, limit: int) -> int:
    """Delete at most ``limit`` idempotency records older than ``older_than`` seconds; return how many went."""
    status = await connection.execute(query("prune_idempotency_keys"), older_than, limit)
    return int(status.split()[-1])


async def prune_operations(connection: Connection, *, older_than: float, limit: int) -> int:
    """Delete at most ``limit`` settled operations older than ``older_than`` seconds; return how many went."""
    status = await connection.execute(query("prune_operations"), older_than, limit)
    return int(status.split()[-1])


# --- the relay's --------------------------------------------------------------------------------------------


async def take_relay_lock(connection: Connection) -> bool:
    """Try to become the active relay (a session advisory lock): True if this connection now holds it."""
    return bool(await connection.fetchval(query("relay_lock")))


async def relay_cursors(connection: Connection) -> dict[int, int]:
    """Each workspace's last position the broker confirmed."""
    return {r["workspace_id"]: r["position"] for r in await connection.fetch(query("relay_cursors"))}


async def workspaces_with_unpublished_events(connection: Connection) -> list[int]:
    """The workspaces whose log holds events past their cursor."""
    return [r["workspace_id"] for r in await connection.fetch(query("workspaces_with_unpublished_events"))]


async def next_to_publish(connection: Connection, *, cursors: Mapping[int, int], limit: int,
                          ) -> list[asyncpg.Record]:
    """The next events of the workspaces of ``cursors``, each after its position there, in position order, at most
    ``limit`` (rows: workspace_id, position, event_id, type, routing_key, event)."""
    return await connection.fetch(query("events_after"), list(cursors), list(cursors.values()), limit)


async def advance_cursors(connection: Connection, *, heads: Mapping[int, int]) -> None:
    """Move the workspaces' cursors to the positions of ``heads`` (the broker confirmed up to them)."""
    await connection.execute(query("advance_cursors"), list(heads), list(heads.values()))


async def outbox_lag(connection: Executor) -> tuple[int, float]:
    """How many events are committed and not yet published, and the oldest one's age in seconds."""
    row = await connection.fetchrow(query("outbox_lag"))
    assert row is not None
    return int(row["unpublished"]), float(row["oldest_age"])
