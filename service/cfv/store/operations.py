"""Operations (one per command), as the operator's dead-letter tools see them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson

from cfv.store.database import Connection
from cfv.store.queries import query


async def failure_reasons(connection: Connection, *, operation_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
    """The error messages of those of ``operation_ids`` that failed."""
    rows = await connection.fetch(query("failed_operations"), list(operation_ids))
    found: dict[uuid.UUID, list[str]] = {}
    for r in rows:
        outcome = orjson.loads(r["outcome"]) if isinstance(r["outcome"], str) else r["outcome"]
        found[r["id"]] = [str(e.get("message", "")) for e in (outcome or {}).get("errors", [])]
    return found


async def reopen_failed(connection: Connection, *, operation_ids: Sequence[uuid.UUID]) -> int:
    """Set those of ``operation_ids`` that failed back to pending (their message is replayed: the worker is to
    apply it, not answer the failure); return how many."""
    status = await connection.execute(query("reopen_failed_operations"), list(operation_ids))
    return int(status.split()[-1])
