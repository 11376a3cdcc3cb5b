"""Operations (one per command): recorded pending by the gateway, failed by the worker when a message cannot be
applied, read by the gateway's reply waiter and by the operator's dead-letter tools."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from cfv.contracts import Outcome
from cfv.store.database import Connection, Executor
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


async def mark_pending(executor: Executor, *, ids: Sequence[uuid.UUID],
                       workspace_ids: Sequence[int], public_keys: Sequence[bytes]) -> None:
    """Record operations as pending (those not recorded yet), each with the public key of the API key that
    submitted it: only that key's refusal may settle it."""
    await executor.execute(query("mark_operations_pending"), list(ids), list(workspace_ids), list(public_keys))


async def settled_outcomes(executor: Executor, *, ids: Sequence[uuid.UUID],
                           ) -> list[asyncpg.Record]:
    """The outcomes (rows: id, outcome) of those of ``ids`` that are no longer pending."""
    return await executor.fetch(query("operation_outcomes"), list(ids))


async def record_failures(connection: Connection, *, ids: Sequence[uuid.UUID], workspace_ids: Sequence[int],
                          outcomes: Sequence[str], settle_pending_of: bytes | None) -> None:
    """Record operations failed with their ``outcomes`` (JSON text). Operations already recorded are left as they
    are, unless ``settle_pending_of`` names the public key whose pending operations these may settle."""
    await connection.execute(query("fail_operations"), list(ids), list(workspace_ids), list(outcomes),
                             settle_pending_of is not None, settle_pending_of)


async def notify(connection: Connection, *, channels: Sequence[str], payloads: Sequence[str]) -> None:
    """``NOTIFY`` each channel with its payload (sent at the transaction's commit)."""
    await connection.fetchval(query("notify"), list(channels), list(payloads))


async def fence(connection: Connection, *, operation_id: uuid.UUID, workspace_id: int, public_key: bytes,
                failure: str) -> tuple[str, Outcome] | None:
    """Settle an operation whose command the broker did not confirm: record it failed with ``failure`` (its
    outcome, JSON text) unless a worker recorded it first. Holds the workspace's apply lock, so no worker is
    between reading and writing the record meanwhile. Returns the record's status and outcome, whichever won
    (None if the id is another workspace's operation)."""
    async with connection.transaction():
        await connection.execute(query("lock_workspace"), workspace_id)
        await connection.execute(query("fence_operation"), operation_id, workspace_id, failure, public_key)
        row = await connection.fetchrow(query("operation"), operation_id, workspace_id)
    if row is None:
        return None
    outcome = orjson.loads(row["outcome"]) if isinstance(row["outcome"], str) else row["outcome"]
    return row["status"], outcome


async def operation_of(executor: Executor, *, operation_id: uuid.UUID, workspace_id: int) -> asyncpg.Record | None:
    """The operation's status and outcome, if it is the workspace's."""
    return await executor.fetchrow(query("operation"), operation_id, workspace_id)
