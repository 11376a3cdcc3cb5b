"""Applying a batch of commands in one Postgres transaction (group commit).

The transaction reads what the batch needs (:mod:`cfv.store.batches`), decides every command's outcome and
every row without I/O (:mod:`cfv.worker.plan`), and writes it all: the value history, the current values, the
change events (in the event log), the operations' outcomes (which also record that each command was processed,
so a redelivered command is answered from its record and never applied twice), idempotency keys, and the
notifications that wake waiting gateways and the relay. In the common case that is five round trips per batch,
whatever its size (one more when the batch writes relations to users: they are looked up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson
from cfv_schemas.commands import Command, DeleteProject

from cfv.contracts import NamedOperation, Outcome, reply_channel
from cfv.domain.writes import ErrorType, ItemError, failed
from cfv.store import batches
from cfv.store import operations as stored_operations
from cfv.store.database import Connection
from cfv.worker.plan import BatchPlanner, reads_of, reply_payloads

__all__ = ["NamedOperation", "apply_batch", "fail_operations", "reply_payloads"]


async def apply_batch(connection: Connection, commands: Sequence[Command], signed_by: Sequence[bytes], *,
                      locked: Callable[[Connection], Awaitable[None]] | None = None) -> list[Outcome]:
    """Apply ``commands`` (``signed_by[i]``: the public key that signed command ``i``'s message) in one
    transaction; return each one's outcome, in order. ``locked(connection)`` runs in the transaction as soon as
    it holds the workspaces' locks."""
    async with connection.transaction():
        now = await batches.lock_workspaces(connection, (c.workspace_id for c in commands))
        if locked is not None:
            await locked(connection)
        projects = [(c.workspace_id, c.project_id) for c in commands if isinstance(c, DeleteProject)]
        project_fields = await batches.live_project_fields(connection, projects) if projects else {}
        reads = reads_of(commands, signed_by, project_fields)
        planner = BatchPlanner(commands, signed_by, await batches.load(connection, reads), reads.keys, project_fields)
        idempotency = await batches.idempotency_records(connection, planner.idempotency_scopes())
        deletion_keys = {field_id: await batches.field_value_keys(connection, field_id)
                         for field_id in dict.fromkeys(planner.deleting())}
        more_states = [*await batches.key_states(connection, planner.keys_to_read(deletion_keys)),
                       *await batches.unique_holders(connection, planner.unique_probes())]
        more_ids = await batches.allocate_ids(connection, planner.ids_needed())
        named = planner.users_named()
        users = await batches.users_named(connection, named) if named else None
        deleting = planner.deleting()
        deleted = await batches.being_deleted(connection, deleting, projects) if deleting or projects else None
        plan = planner.plan(now, idempotency=idempotency, more_states=more_states, more_ids=more_ids, users=users,
                            deleted=deleted)
        await batches.persist(connection, plan.writes, now)
        return plan.outcomes


async def fail_operations(
    connection: Connection, operations: Sequence[NamedOperation], reason: str, kind: ErrorType,
    signer: bytes | None = None,
) -> list[Outcome]:
    """Mark ``operations`` failed with ``reason`` and tell their waiting gateways, in one transaction.

    A message refused before it could be applied (bad format, bad credentials) may name anyone's operation: it
    only records operations that do not exist yet (owned by nobody), so it can never fail a real pending one.
    A verified message that failed inside cfv (``signer``: its key) settles its own key's pending operations.
    """
    if not operations:
        return []
    outcomes = {op.id: failed(op.id, [ItemError(kind, reason, "credentials" if kind is ErrorType.UNAUTHENTICATED
                                                 else "command")]) for op in operations}
    # Only a command that failed inside cfv (internal) settles an operation that is already pending: a message
    # refused before it could be applied may name anyone's operation, so it only records new ones.
    internal = kind is ErrorType.INTERNAL
    async with connection.transaction():
        await stored_operations.record_failures(
            connection, ids=[op.id for op in operations], workspace_ids=[op.workspace_id for op in operations],
            outcomes=[_json(outcomes[op.id]) for op in operations],
            settle_pending_of=signer if internal else None)
        channels, payloads = [], []
        for op in operations:
            if op.reply_to and internal and signer is not None:  # the others name no operation a gateway waits for
                for payload in reply_payloads([outcomes[op.id]]):
                    channels.append(reply_channel(op.reply_to))
                    payloads.append(payload)
        if channels:
            await stored_operations.notify(connection, channels=channels, payloads=payloads)
    return list(outcomes.values())


def _json(value: object) -> str:
    return orjson.dumps(value).decode()
