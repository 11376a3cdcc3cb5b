"""Applying a batch of commands in one Postgres transaction (group commit).

Each command is all-or-nothing: a command with any invalid item writes nothing and fails, and the rest of
the batch goes on. Commands are applied in the order given, which is the order their workspace's stream
delivered them. In the same transaction go the value history, the current values, the change events (in
the outbox), the operations' outcomes (which also record that each command was processed, so a redelivered
command is answered from its record and never applied twice), idempotency keys, and the notifications that
wake waiting gateways.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import orjson
from cfv_schemas.commands import Command, DeleteField, RegisterSubjects
from cfv_schemas.events import EVENT_TYPES

from cfv.domain.changes import EMPTY, Change, KeyState, StoredValue, fold_command
from cfv.domain.fields import FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import rules_from_storage
from cfv.domain.writes import ErrorType, ExternalRef, ItemError, Op, ValidWrite, ValueKey, WriteItem, validate_items
from cfv.store.database import Connection
from cfv.store.queries import query
from cfv.worker.access import BatchAccess, Signer

Outcome = dict[str, Any]  # the JSON form of cfv_schemas.outcomes.Outcome, built directly on the hot path
REPLY_CHANNEL_PREFIX = "cfv_reply_"
OUTBOX_CHANNEL = "cfv_outbox"
_NOTIFY_LIMIT = 7_800  # Postgres refuses payloads of 8000 bytes or more


def reply_channel(gateway_id: str) -> str:
    """The LISTEN channel on which a gateway hears the outcomes of its commands."""
    return REPLY_CHANNEL_PREFIX + gateway_id


@dataclass
class _Prepared:
    command: Command
    writes: list[ValidWrite] = field(default_factory=list)
    outcome: Outcome | None = None  # set when the command is settled without writing
    deleting: FieldDefinition | None = None  # the field a DeleteField command deletes
    stored_keys: list[ValueKey] = field(default_factory=list)  # and the keys holding its values before the batch
    signer: Signer | None = None  # None: the command's credentials were refused (its outcome says why)


async def apply_batch(connection: Connection, commands: Sequence[Command],
                      signed_by: Sequence[bytes]) -> list[Outcome]:
    """Apply ``commands`` (``signed_by[i]``: the public key that signed command ``i``'s message) in one
    transaction; return each one's outcome, in order."""
    async with connection.transaction():
        return await _apply(connection, commands, signed_by)


async def _apply(connection: Connection, commands: Sequence[Command], signed_by: Sequence[bytes]) -> list[Outcome]:
    row = await connection.fetchrow(query("lock_workspaces"), sorted({c.workspace_id for c in commands}))
    assert row is not None
    now: datetime = row["now"]

    known = {r["id"]: r for r in await connection.fetch(query("known_operations"), [c.id for c in commands])}
    claims = _claims(commands, signed_by, known)
    taken = [claim is _Claim.TAKEN for claim in claims]
    done = {c.id: known[c.id]["outcome"] for c, claim in zip(commands, claims, strict=True) if claim is _Claim.DONE}
    fresh: list[Command] = []
    fresh_signers: list[bytes] = []
    seen: set[uuid.UUID] = set()
    for command, public_key, claim in zip(commands, signed_by, claims, strict=True):
        if claim is _Claim.NEW and command.id not in seen:
            seen.add(command.id)
            fresh.append(command)
            fresh_signers.append(public_key)

    access = await BatchAccess.load(connection, fresh, fresh_signers)
    definitions = await _definitions(connection, fresh)
    prepared = []
    for command, public_key in zip(fresh, fresh_signers, strict=True):
        authenticated = access.authenticate(command, public_key)
        if isinstance(authenticated, ItemError):
            prepared.append(_Prepared(command, outcome=_failed(command.id, [authenticated])))
            continue
        p = _validate(command.model_copy(update={"actor": authenticated.actor}), definitions)
        p.signer = authenticated
        if p.deleting is not None:  # refused before its values are read: nobody may make the worker read them
            refusal = access.field_deletion_error(authenticated, p.deleting)
            if refusal is not None:
                p.outcome, p.deleting = _failed(command.id, [refusal]), None
        prepared.append(p)
    idempotency = await _idempotency_records(connection, [p.command for p in prepared if p.signer is not None])
    for p in prepared:
        if p.deleting is not None:
            p.stored_keys = [ValueKey(SubjectType(r["subject_type"]), r["subject_id"], p.deleting.id)
                             for r in await connection.fetch(query("field_value_keys"), p.deleting.id)]

    writes = [w for p in prepared for w in p.writes]
    states = await _current_states(connection, [(p.command.workspace_id, key) for p in prepared
                                                for key in [w.key for w in p.writes] + p.stored_keys]
                                   + await _unique_holders(connection, prepared))
    # A field's deletion also deletes the values this batch gives it: at most one per write.
    deletions = sum(len(p.stored_keys) + len(writes) for p in prepared if p.deleting is not None)
    ids = iter(await _allocate_ids(connection, len(writes) + deletions))
    slugs = {r["id"]: r["slug"] for r in await connection.fetch(
        query("workspace_slugs"), list({c.workspace_id for c in fresh}))}

    batch = _BatchWrites(now)
    deleted_fields: set[int] = set()
    for p in prepared:
        command, signer = p.command, p.signer
        if signer is None:
            continue
        idem = (command.workspace_id, _idempotency_scope(command)) if command.idempotency_key else None
        if idem is not None and idem in idempotency:
            p.outcome = _replay(command, *idempotency[idem])
            continue
        if isinstance(command, RegisterSubjects):
            refused = access.register(signer, command)
            p.outcome = _failed(command.id, refused) if refused else _succeeded(command.id)
            if idem is not None and not refused:
                idempotency[idem] = (command.request_hash or "", p.outcome)
                batch.idempotency.append(command)
            continue
        if p.outcome is None and p.deleting is not None:
            if p.deleting.id in deleted_fields:
                p.outcome = _failed(command.id, [_field_not_found(p.deleting.id)])
                continue
            deleted_fields.add(p.deleting.id)
            p.writes = _deletes_of_field(p.deleting, p.stored_keys, states.get(command.workspace_id, {}))
        elif p.outcome is None and deleted_fields:  # validated before an earlier command deleted its field
            gone = [_field_not_found(w.key.custom_field_id, w.index) for w in p.writes
                    if w.key.custom_field_id in deleted_fields]
            if gone:
                p.outcome = _failed(command.id, gone)
                continue
        if p.outcome is None:
            forbidden = [] if p.deleting else access.write_errors(signer, command.workspace_id, p.writes)
            if forbidden:
                p.outcome = _failed(command.id, forbidden)
                continue
            changes, errors = fold_command(states.setdefault(command.workspace_id, {}), p.writes, ids)
            if errors:
                p.outcome = _failed(command.id, errors)
                continue
            p.outcome = batch.add(command, p.writes, changes, slugs[command.workspace_id],
                                  [access.can_read(signer, command.workspace_id, w) for w in p.writes])
            if idem is not None:  # only successes are remembered: a refused request may be corrected
                idempotency[idem] = (command.request_hash or "", p.outcome)
                batch.idempotency.append(command)
    await batch.write(connection, states)
    if access.registrations:
        await connection.execute(query("register_subjects"), *_columns(access.registrations), now)
    if deleted_fields:
        await connection.execute(query("mark_fields_deleted"), list(deleted_fields), now)

    outcomes: dict[uuid.UUID, Outcome] = {}
    for p in prepared:
        assert p.outcome is not None
        outcomes[p.command.id] = p.outcome
    # A command refused for its credentials records its failure without settling anyone's operation. Signed
    # by a key of its workspace (revoked, expired) it settles that key's pending operation and owns the
    # record; signed by a stranger, the record is owned by nobody (the genuine command of that id may still
    # come, and takes it over) and no gateway hears of it: gateways sign with their callers' keys.
    unauthenticated = {p.command.id for p in prepared if p.signer is None}
    await _complete_operations(connection, [(c, key) for c, key in zip(fresh, fresh_signers, strict=True)
                                            if c.id not in unauthenticated], outcomes, now)
    strangers = {c.id for c, key in zip(fresh, fresh_signers, strict=True)
                 if c.id in unauthenticated and not access.of_workspace(key, c.workspace_id)}
    if unauthenticated:
        await connection.execute(query("fail_unauthenticated"), *_columns(
            (c.id, c.workspace_id, _json(outcomes[c.id]), None if c.id in strangers else key)
            for c, key in zip(fresh, fresh_signers, strict=True) if c.id in unauthenticated), now)
    if batch.idempotency:  # after the operations they point at
        await connection.execute(query("record_idempotency_keys"), *_columns(
            (c.workspace_id, _idempotency_scope(c), c.request_hash or "", c.id) for c in batch.idempotency), now)
    outcomes.update(done)
    await _notify(connection, [c for c, claim in zip(commands, claims, strict=True)
                               if claim is not _Claim.TAKEN and c.id not in strangers], outcomes,
                  announced={workspace_id for _, workspace_id, _, _ in batch.events})
    return [_failed(c.id, [_id_taken()]) if refused else outcomes[c.id]
            for c, refused in zip(commands, taken, strict=True)]


def _field_ids(command: Command) -> list[int]:
    if isinstance(command, DeleteField):
        return [command.custom_field_id]
    if isinstance(command, RegisterSubjects):
        return []
    return [item.custom_field_id for item in command.items]


class _Claim(Enum):
    """What a command's id is to it: its own operation done, one to apply, or another's."""

    DONE = "done"  # recorded and settled for this command's key: answered from the record
    NEW = "new"  # unknown, pending for this key, or owned by nobody: applied (taking the record over)
    TAKEN = "taken"  # another workspace's or key's operation (or, in this batch, a copy of another's command)


def _claims(commands: Sequence[Command], signed_by: Sequence[bytes],
            known: Mapping[uuid.UUID, Any]) -> list[_Claim]:
    """The one rule of operation ownership: an operation id belongs to a workspace and the key that signed its
    command. A record owned by nobody (a refusal of an unsigned or unknown-key message) can be taken over; in
    a batch, the first command of an id decides its owner."""
    claims = []
    first: dict[uuid.UUID, tuple[int, bytes]] = {}
    for command, key in zip(commands, signed_by, strict=True):
        owner = (command.workspace_id, key)
        row = known.get(command.id)
        if first.setdefault(command.id, owner) != owner:
            claims.append(_Claim.TAKEN)
        elif row is None or (row["workspace_id"] == command.workspace_id and row["public_key"] is None):
            claims.append(_Claim.NEW)
        elif row["workspace_id"] == command.workspace_id and bytes(row["public_key"]) == key:
            claims.append(_Claim.NEW if row["status"] == "pending" else _Claim.DONE)
        else:
            claims.append(_Claim.TAKEN)
    return claims


def _id_taken() -> ItemError:
    return ItemError(ErrorType.CONFLICT, "this command id is already the id of another operation; use a new id",
                     "id")


def _field_not_found(field_id: int, index: int | None = None) -> ItemError:
    return ItemError(ErrorType.NOT_FOUND, f"custom field {field_id} not found", "custom_field_id", index, field_id)


def _deletes_of_field(definition: FieldDefinition, stored_keys: list[ValueKey],
                      states: dict[ValueKey, KeyState]) -> list[ValidWrite]:
    """A delete of every value the field holds now: stored before the batch, or written earlier in it."""
    keys = dict.fromkeys(stored_keys + [k for k in states if k.custom_field_id == definition.id])
    return [ValidWrite(index, key, None, definition, Op.DELETE) for index, key in enumerate(
        key for key in keys if states.get(key, EMPTY).current is not None)]


async def _definitions(
    connection: Connection, commands: Iterable[Command]
) -> dict[int, FieldDefinition]:
    # An id beyond bigint names no field (it is answered not_found); sent to Postgres it would fail the batch.
    field_ids = list({field_id for c in commands for field_id in _field_ids(c) if -(2**63) <= field_id < 2**63})
    if not field_ids:
        return {}
    return {
        r["id"]: FieldDefinition(
            id=r["id"],
            workspace_id=r["workspace_id"],
            name=r["name"],
            subject_type=SubjectType(r["subject_type"]),
            value_type=ValueType(r["value_type"]),
            choice_ids=frozenset(r["choice_ids"]),
            relation_target=RelationTarget(r["relation_target"]) if r["relation_target"] else None,
            relation_multi=r["relation_multi"],
            deleted=r["deleted"],
            active=r["is_active"],
            required=r["is_required"],
            choice_uuids={str(u): i for u, i in zip(r["choice_uuids"], r["all_choice_ids"], strict=True)},
            rules=rules_from_storage(r["validation_rules"]),
            unique=r["unique_constraint"],
            write_access=r["write_access"],
            read_access=r["read_access"],
            project=str(r["project_id"]) if r["project_id"] is not None else None,
        )
        for r in await connection.fetch(query("field_definitions"), field_ids)
    }


def _validate(command: Command, definitions: dict[int, FieldDefinition]) -> _Prepared:
    if isinstance(command, RegisterSubjects):
        return _Prepared(command)  # checked and applied in order, as registrations change what follows
    if isinstance(command, DeleteField):
        definition = definitions.get(command.custom_field_id)
        if definition is None or definition.deleted or definition.workspace_id != command.workspace_id:
            return _Prepared(command, outcome=_failed(command.id, [_field_not_found(command.custom_field_id)]))
        return _Prepared(command, deleting=definition)
    items = [WriteItem(i.subject_type, i.subject_id, i.custom_field_id, i.value, Op(i.op), i.must_exist,
                       ExternalRef(i.external_id, i.external_source), i.expected_version, i.origin)
             for i in command.items]
    valid, errors = validate_items(command.workspace_id, items, definitions)
    if errors:
        return _Prepared(command, outcome=_failed(command.id, errors))
    return _Prepared(command, writes=valid)


async def _idempotency_records(
    connection: Connection, commands: Sequence[Command]
) -> dict[tuple[int, str], tuple[str, Outcome]]:
    keyed = [c for c in commands if c.idempotency_key is not None]
    if not keyed:
        return {}
    rows = await connection.fetch(query("idempotency_records"), [c.workspace_id for c in keyed],
                                  [_idempotency_scope(c) for c in keyed])
    return {(r["workspace_id"], r["key"]): (r["request_hash"], r["outcome"]) for r in rows}


def _idempotency_scope(command: Command) -> str:
    """An idempotency key belongs to the API key that sent it (the authenticated actor): another key reusing it
    neither replays the first one's outcome nor is refused for it."""
    return f"{command.actor}|{command.idempotency_key}"


def _replay(command: Command, request_hash: str, original: Outcome) -> Outcome:
    if request_hash != (command.request_hash or ""):
        return _failed(command.id, [ItemError(
            ErrorType.CONFLICT,
            "this Idempotency-Key was already used with a different request; use a new key for a new request",
            "Idempotency-Key")])
    return {**original, "id": str(command.id), "replayed_from": original.get("replayed_from") or original["id"]}


async def _current_states(
    connection: Connection, keys: list[tuple[int, ValueKey]]
) -> dict[int, dict[ValueKey, KeyState]]:
    states: dict[int, dict[ValueKey, KeyState]] = {}
    if not keys:
        return states
    unique = list(dict.fromkeys(keys))
    rows = await connection.fetch(
        query("current_states"),
        [ws for ws, _ in unique], [k.subject_type.value for _, k in unique],
        [k.subject_id for _, k in unique], [k.custom_field_id for _, k in unique],
    )
    for r in rows:
        key = ValueKey(SubjectType(r["subject_type"]), r["subject_id"], r["custom_field_id"])
        current = (StoredValue(r["value_id"], r["value"], ExternalRef(r["external_id"], r["external_source"]))
                   if r["value_id"] is not None else None)
        states.setdefault(r["workspace_id"], {})[key] = KeyState(current, r["seq"])
    return states


async def _unique_holders(connection: Connection, prepared: list[_Prepared]) -> list[tuple[int, ValueKey]]:
    """The keys holding a value that a write to a unique field is about to write: the fold needs them."""
    wanted = [(p.command.workspace_id, w.key.custom_field_id, _json(w.value)) for p in prepared for w in p.writes
              if w.definition.unique and w.op is Op.WRITE and w.value is not None]
    if not wanted:
        return []
    rows = await connection.fetch(query("unique_holders"), *_columns(wanted))
    return [(r["workspace_id"], ValueKey(SubjectType(r["subject_type"]), r["subject_id"], r["custom_field_id"]))
            for r in rows]


async def _allocate_ids(connection: Connection, count: int) -> list[int]:
    if count == 0:
        return []
    return [r["id"] for r in await connection.fetch(query("allocate_value_ids"), count)]


class _BatchWrites:
    """The rows a batch will write, gathered as commands are folded, then written set-wise."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.versions: list[tuple[Command, ValidWrite, Change]] = []
        self.events: list[tuple[uuid.UUID, int, str, dict[str, Any]]] = []
        self.idempotency: list[Command] = []
        self.last_writer: dict[tuple[int, ValueKey], tuple[Command, ValidWrite]] = {}

    def add(self, command: Command, writes: list[ValidWrite], changes: list[Change], slug: str,
            readable: list[bool]) -> Outcome:
        """Gather a command's changes; its outcome shows the values the writer may read (the others hidden)."""
        values: list[dict[str, Any]] = []
        for write, change, shown in zip(writes, changes, readable, strict=True):
            self.versions.append((command, write, change))
            self.last_writer[(command.workspace_id, change.key)] = (command, write)
            self.events.append(_event(command, write, change, slug, self.now))
            values.append(_value_out(command, write, change, self.now, hidden=not shown))
        return {"id": str(command.id), "status": "succeeded", "values": values, "errors": []}

    async def write(self, connection: Connection, states: dict[int, dict[ValueKey, KeyState]]) -> None:
        if self.versions:
            await connection.execute(query("insert_versions"), *_columns(
                (change.version_id, command.workspace_id, change.key.subject_type.value, change.key.subject_id,
                 change.key.custom_field_id, change.seq, *_stored_columns(change.after), command.actor,
                 command.id, write.origin)
                for command, write, change in self.versions), self.now)
            finals = []
            for (workspace_id, key), (command, write) in self.last_writer.items():
                state = states[workspace_id][key]
                value_id = state.current.id if state.current is not None else None
                finals.append((workspace_id, key.subject_type.value, key.subject_id, key.custom_field_id,
                               state.seq, value_id, *_stored_columns(state.current), command.actor, command.id,
                               write.origin, write.definition.unique))
            await connection.execute(query("upsert_current"), *_columns(finals, width=13), self.now)
        if self.events:
            await connection.execute(query("insert_events"), *_columns(
                (event_id, workspace_id, event["type"], routing_key, _json(event))
                for event_id, workspace_id, routing_key, event in self.events), self.now)


async def _complete_operations(
    connection: Connection, commands: Sequence[tuple[Command, bytes]], outcomes: dict[uuid.UUID, Outcome],
    now: datetime,
) -> None:
    """Record the outcomes of ``commands`` (each with the key that signed it)."""
    if commands:
        await connection.execute(query("complete_operations"), *_columns(
            (c.id, c.workspace_id, outcomes[c.id]["status"], _json(outcomes[c.id]), key) for c, key in commands),
            now)


async def _notify(
    connection: Connection, commands: Sequence[Command], outcomes: dict[uuid.UUID, Outcome],
    *, announced: set[int],
) -> None:
    """Tell waiting gateways their commands' outcomes, and the relay which workspaces have new events; both at
    commit."""
    by_channel: dict[str, list[Outcome]] = {}
    for command in commands:
        if command.reply_to:
            by_channel.setdefault(reply_channel(command.reply_to), []).append(outcomes[command.id])
    channels: list[str] = []
    payloads: list[str] = []
    for channel, channel_outcomes in by_channel.items():
        for payload in reply_payloads(channel_outcomes):
            channels.append(channel)
            payloads.append(payload)
    if announced:
        channels.append(OUTBOX_CHANNEL)
        payloads.append(",".join(map(str, sorted(announced))))
    if channels:
        await connection.fetchval(query("notify"), channels, payloads)


@dataclass(frozen=True, slots=True)
class NamedOperation:
    """An operation named by a message that cannot be applied, and who may be waiting for it."""

    id: uuid.UUID
    workspace_id: int
    reply_to: str | None


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
    outcomes = {op.id: _failed(op.id, [ItemError(kind, reason, "credentials" if kind is ErrorType.UNAUTHENTICATED
                                                 else "command")]) for op in operations}
    # Only a command that failed inside cfv (internal) settles an operation that is already pending: a message
    # refused before it could be applied may name anyone's operation, so it only records new ones.
    internal = kind is ErrorType.INTERNAL
    async with connection.transaction():
        await connection.execute(query("fail_operations"), *_columns(
            (op.id, op.workspace_id, _json(outcomes[op.id])) for op in operations), internal and signer is not None,
            signer if internal else None)
        channels, payloads = [], []
        for op in operations:
            if op.reply_to and internal and signer is not None:  # the others name no operation a gateway waits for
                for payload in reply_payloads([outcomes[op.id]]):
                    channels.append(reply_channel(op.reply_to))
                    payloads.append(payload)
        if channels:
            await connection.fetchval(query("notify"), channels, payloads)
    return list(outcomes.values())


def reply_payloads(outcomes: Iterable[Outcome]) -> list[str]:
    """Pack outcomes into NOTIFY payloads (JSON arrays) under Postgres's size limit.

    An outcome too large for one payload travels as ``{"id": …, "fetch": true}``: the gateway reads it from
    the operations table instead.
    """
    payloads: list[str] = []
    parts: list[str] = []
    size = 2
    for outcome in outcomes:
        text = orjson.dumps(outcome).decode()
        if len(text.encode()) > _NOTIFY_LIMIT - 2:
            text = orjson.dumps({"id": outcome["id"], "fetch": True}).decode()
        if parts and size + len(text.encode()) + 1 > _NOTIFY_LIMIT:
            payloads.append("[" + ",".join(parts) + "]")
            parts, size = [], 2
        parts.append(text)
        size += len(text.encode()) + 1
    if parts:
        payloads.append("[" + ",".join(parts) + "]")
    return payloads


def _stored_columns(stored: StoredValue | None) -> tuple[str | None, str | None, str | None]:
    """A value's ``value, external_id, external_source`` columns; all null for a deleted one."""
    if stored is None:
        return None, None, None
    return _json(stored.value), stored.external.id, stored.external.source


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _columns(rows: Iterable[tuple[Any, ...]], width: int | None = None) -> list[list[Any]]:
    """Rows to columns, the shape ``unnest`` takes."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    if not columns and width is not None:
        return [[] for _ in range(width)]
    return columns


def _succeeded(command_id: uuid.UUID) -> Outcome:
    return {"id": str(command_id), "status": "succeeded", "values": [], "errors": []}


def _failed(command_id: uuid.UUID, errors: Iterable[ItemError]) -> Outcome:
    return {"id": str(command_id), "status": "failed", "values": [], "errors": [
        {"type": e.type.value, "message": e.message, "field": e.field, "index": e.index,
         "custom_field_id": e.custom_field_id}
        for e in errors]}


def _value_out(command: Command, write: ValidWrite, change: Change, now: datetime, *,
               hidden: bool = False) -> dict[str, Any]:
    """The value a change left (for a delete: the one it removed, with a null value); ``hidden``: the writer may
    not read the field, so the value is not shown (a multi choice edit, say, would show the whole set)."""
    definition = write.definition
    stored = change.after or change.before
    assert stored is not None
    return {
        "change": change.kind.value, "id": stored.id, "subject_type": change.key.subject_type.value,
        "subject_id": change.key.subject_id, "custom_field_id": definition.id,
        "custom_field_name": definition.name, "value_type": definition.value_type.value,
        "value": change.after.value if change.after and not hidden else None,
        "external_id": stored.external.id, "external_source": stored.external.source, "origin": write.origin,
        "sequence": change.seq, "setter": command.actor, "hidden": hidden,
        "operation_id": str(command.id), "created_at": now.isoformat(),
    }


def _ref(stored: StoredValue | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {"id": stored.id, "value": stored.value, "external_id": stored.external.id,
            "external_source": stored.external.source}


def _event(
    command: Command, write: ValidWrite, change: Change, slug: str, now: datetime
) -> tuple[uuid.UUID, int, str, dict[str, Any]]:
    definition = write.definition
    key = change.key
    event_id = uuid.uuid4()
    routing_key = f"{slug}.{key.subject_type.value}.{key.custom_field_id}.{change.kind.value}"
    event = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": f"/workspaces/{slug}",
        "type": EVENT_TYPES[change.kind.value],
        "subject": f"{key.subject_type.value}/{key.subject_id}/custom_fields/{key.custom_field_id}",
        "time": now.isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "workspace_id": command.workspace_id, "workspace": slug,
            "subject_type": key.subject_type.value, "subject_id": key.subject_id,
            "custom_field_id": key.custom_field_id, "value_type": definition.value_type.value,
            "sequence": change.seq,
            "before": _ref(change.before),
            "after": _ref(change.after),
            "setter": command.actor, "origin": write.origin, "operation_id": str(command.id),
        },
    }
    return event_id, command.workspace_id, routing_key, event

