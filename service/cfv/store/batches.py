"""The apply transaction's reads and writes: what a batch of commands needs from Postgres, and what it leaves.

A batch costs five round trips in the common case: ``BEGIN``, the workspaces' locks, one statement that reads
everything the checks and the fold need (:func:`load`), one that writes everything (:func:`persist`), and
``COMMIT``. Rarer needs (idempotency records, the values of a field being deleted, holders of a unique value,
subject placements) add a statement each, only when the batch has them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from cfv.domain.changes import KeyState, StoredValue
from cfv.domain.fields import SUBJECT_TYPES, FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import rules_from_storage
from cfv.domain.users import KnownUsers
from cfv.domain.writes import ExternalRef, ValueKey
from cfv.store.database import Connection
from cfv.store.queries import query

WorkspaceKey = tuple[int, ValueKey]
Subject = tuple[int, str, str]  # workspace id, subject type, subject id


@dataclass(frozen=True, slots=True)
class Reads:
    """What a batch needs read: derived from its commands before anything is known of them."""

    operation_ids: Sequence[uuid.UUID]
    signers: Sequence[bytes]
    field_ids: Sequence[int]
    keys: Sequence[WorkspaceKey]
    subjects: Sequence[Subject]
    workspaces: Sequence[int]
    new_ids: int


@dataclass(frozen=True, slots=True)
class KnownOperation:
    """An operation already recorded."""

    workspace_id: int
    status: str
    outcome: dict[str, Any] | None
    public_key: bytes | None


@dataclass(frozen=True, slots=True)
class SignerRow:
    """A key that signed some of the batch's messages, and its user, as they are now."""

    public_key: bytes
    key_id: int
    workspace_id: int
    user_id: int
    account_role: str
    valid: bool


@dataclass
class Loaded:
    """Everything :func:`load` read."""

    known: dict[uuid.UUID, KnownOperation]
    signers: list[SignerRow]
    memberships: list[tuple[int, str, str]]  # user, project, permission
    definitions: dict[int, FieldDefinition]
    states: dict[int, dict[ValueKey, KeyState]]
    registrations: dict[Subject, str]
    slugs: dict[int, str]
    heads: dict[int, int]  # a workspace's last event position
    ids: list[int]


@dataclass
class Writes:
    """Every row a batch writes (columns as in apply.sql; JSON values as Python values, or as JSON text wrapped in
    :class:`orjson.Fragment`)."""

    versions: list[tuple[Any, ...]] = field(default_factory=list)  # see persist_batch in apply.sql
    current: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    operations: list[tuple[Any, ...]] = field(default_factory=list)
    notifications: list[tuple[str, str]] = field(default_factory=list)
    unauthenticated: list[tuple[Any, ...]] = field(default_factory=list)
    idempotency_keys: list[tuple[Any, ...]] = field(default_factory=list)
    registrations: list[tuple[int, str, str, str]] = field(default_factory=list)
    deleted_fields: list[int] = field(default_factory=list)
    deleted_projects: list[tuple[int, uuid.UUID]] = field(default_factory=list)  # (workspace, project)


async def lock_workspaces(connection: Connection, workspaces: Iterable[int]) -> datetime:
    """Take the apply locks of ``workspaces`` (for the transaction); return the transaction's time."""
    row = await connection.fetchrow(query("lock_workspaces"), sorted(set(workspaces)))
    assert row is not None
    now: datetime = row["now"]
    return now


async def begin_attempt(connection: Connection, digest: bytes) -> int:
    """Record that the message of ``digest`` is being applied alone (on a connection outside the applying
    transaction); return how many such attempts, this one included, never ended (migration 0012)."""
    unfinished: int = await connection.fetchval(query("begin_attempt"), digest)
    return unfinished


async def end_attempt(connection: Connection, digest: bytes) -> None:
    """Record that the attempt on the message of ``digest`` ended (in the applying transaction, or after a
    refusal)."""
    await connection.execute(query("end_attempt"), digest)


async def load(connection: Connection, reads: Reads) -> Loaded:
    """Read, in one statement, what :class:`Reads` names (call after :func:`lock_workspaces`)."""
    row = await connection.fetchrow(
        query("load_batch"), _rows_json(reads.operation_ids), list(set(reads.signers)),
        # An id beyond bigint names no field (it is answered not_found); sent to Postgres it would fail the batch.
        [i for i in set(reads.field_ids) if -(2**63) <= i < 2**63],
        _rows_json([(ws, k.subject_type, k.subject_id, k.custom_field_id) for ws, k in dict.fromkeys(reads.keys)]),
        _rows_json(list(dict.fromkeys(reads.subjects))), sorted(set(reads.workspaces)), reads.new_ids)
    assert row is not None
    known = {uuid.UUID(r[0]): KnownOperation(r[1], r[2], r[3], bytes.fromhex(r[4]) if r[4] else None)
             for r in _rows(row["known"])}
    signers = [SignerRow(bytes.fromhex(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in _rows(row["signers"])]
    workspaces = _rows(row["workspaces"])
    return Loaded(
        known=known, signers=signers, memberships=[(r[0], r[1], r[2]) for r in _rows(row["memberships"])],
        definitions={r[0]: definition_from_row(r) for r in _rows(row["fields"])},
        states=states_of(_rows(row["states"])),
        registrations={(r[0], r[1], r[2]): r[3] for r in _rows(row["registrations"])},
        slugs={r[0]: r[1] for r in workspaces}, heads={r[0]: r[2] for r in workspaces},
        ids=list(row["ids"] or []))


async def key_states(connection: Connection, keys: Sequence[WorkspaceKey]) -> list[Sequence[Any]]:
    """The state rows of ``keys`` (for :func:`states_of`)."""
    if not keys:
        return []
    return list(await connection.fetch(query("key_states"), *_key_columns(list(dict.fromkeys(keys)))))


async def unique_holders(connection: Connection, probes: Sequence[tuple[int, int, str]]) -> list[Sequence[Any]]:
    """The state rows of the keys of unique fields holding one of the values probed: (workspace, field, value as
    JSON)."""
    if not probes:
        return []
    return list(await connection.fetch(query("unique_holders"), *_columns(probes, 3)))


async def users_named(connection: Connection, named: Sequence[tuple[int, int | str]]) -> KnownUsers:
    """The users of ``named`` (workspace, user id or UUID) that exist, each under its id and its UUID, and whether
    it is active."""
    by_id = [(w, u) for w, u in named if isinstance(u, int)]
    by_uuid = [(w, u) for w, u in named if isinstance(u, str)]
    rows = await connection.fetch(query("users_named"), [w for w, _ in by_id], [u for _, u in by_id],
                                  [w for w, _ in by_uuid], [u for _, u in by_uuid])
    known: dict[tuple[int, int | str], bool] = {}
    for r in rows:
        known[(r["workspace_id"], r["id"])] = known[(r["workspace_id"], r["uuid"])] = r["active"]
    return known


ProjectKey = tuple[int, uuid.UUID]  # workspace id, project id


async def live_project_fields(connection: Connection, projects: Sequence[ProjectKey]) -> dict[ProjectKey, list[int]]:
    """The live properties of each of ``projects`` that exists and is not deleted (the others are left out)."""
    rows = await connection.fetch(query("live_project_fields"), [w for w, _ in projects], [p for _, p in projects])
    return {(r["workspace_id"], r["project_id"]): list(r["field_ids"]) for r in rows}


@dataclass(frozen=True, slots=True)
class Deleted:
    """The fields and projects a batch deletes, as they were (rows by id; projects by workspace and id)."""

    fields: dict[int, Any]
    projects: dict[ProjectKey, Any]


async def being_deleted(connection: Connection, field_ids: Sequence[int], projects: Sequence[ProjectKey]) -> Deleted:
    """The rows of the fields and projects a batch deletes, for their deletion events."""
    found = await connection.fetch(query("fields_being_deleted"), list(dict.fromkeys(field_ids))) if field_ids else []
    kept = await connection.fetch(query("projects_being_deleted"), [w for w, _ in projects],
                                  [p for _, p in projects]) if projects else []
    return Deleted({r["id"]: r for r in found}, {(r["workspace_id"], r["id"]): r for r in kept})


async def field_value_keys(connection: Connection, field_id: int) -> list[tuple[str, str]]:
    """(subject type, subject id) of every value the field holds now."""
    return [(r["subject_type"], r["subject_id"]) for r in await connection.fetch(query("field_value_keys"), field_id)]


async def idempotency_records(connection: Connection, scopes: Sequence[tuple[int, str]]
                              ) -> dict[tuple[int, str], tuple[str, dict[str, Any]]]:
    """The recorded (request hash, outcome) of each (workspace, scoped idempotency key) that has one."""
    if not scopes:
        return {}
    rows = await connection.fetch(query("idempotency_records"), *_columns(scopes, 2))
    return {(r["workspace_id"], r["key"]): (r["request_hash"], r["outcome"]) for r in rows}


async def allocate_ids(connection: Connection, count: int) -> list[int]:
    """``count`` fresh value ids, ascending."""
    if count <= 0:
        return []
    return [r["id"] for r in await connection.fetch(query("allocate_value_ids"), count)]


async def persist(connection: Connection, writes: Writes, now: datetime) -> None:
    """Write the batch's rows, stamped ``now``."""
    await connection.fetchval(query("persist_batch"), _rows_json(writes.versions), _rows_json(writes.current),
                              _rows_json(writes.events), _rows_json(writes.operations),
                              _rows_json(writes.notifications), now)
    if writes.registrations:
        await connection.execute(query("register_subjects"), *_columns(writes.registrations, 4), now)
    if writes.deleted_fields:
        await connection.execute(query("mark_fields_deleted"), writes.deleted_fields, now)
    if writes.deleted_projects:
        await connection.execute(query("mark_projects_deleted"), [w for w, _ in writes.deleted_projects],
                                 [p for _, p in writes.deleted_projects], now)
    if writes.unauthenticated:
        await connection.execute(query("fail_unauthenticated"), *_columns(writes.unauthenticated, 4), now)
    if writes.idempotency_keys:  # after the operations they point at
        await connection.execute(query("record_idempotency_keys"), *_columns(writes.idempotency_keys, 4), now)


def states_of(rows: Iterable[Sequence[Any]]) -> dict[int, dict[ValueKey, KeyState]]:
    """State rows (workspace, subject type, subject id, field, seq, value id, value, external id, external
    source) by workspace and key."""
    states: dict[int, dict[ValueKey, KeyState]] = {}
    for r in rows:
        key = ValueKey(SUBJECT_TYPES[r[1]], r[2], r[3])
        current = StoredValue(r[5], r[6], ExternalRef(r[7], r[8])) if r[5] is not None else None
        states.setdefault(r[0], {})[key] = KeyState(current, r[4])
    return states


def definition_from_row(r: Sequence[Any]) -> FieldDefinition:
    """A field definition from a row of load_batch's fields (workspace_field_definitions' columns are the same)."""
    choices = r[15] or []
    return FieldDefinition(
        id=r[0], workspace_id=r[1], name=r[2], subject_type=SubjectType(r[3]), value_type=ValueType(r[4]),
        relation_target=RelationTarget(r[5]) if r[5] else None, relation_multi=r[6], deleted=r[7], active=r[8],
        required=r[9], rules=rules_from_storage(r[10]), unique=r[11], write_access=r[12], read_access=r[13],
        project=r[14], choice_ids=frozenset(c[0] for c in choices if c[2]),
        choice_uuids={c[1]: c[0] for c in choices})


def _rows_json(rows: Sequence[Any]) -> str:
    """Rows as one JSON array of arrays (see persist_batch): bytes as hex, JSON text given as-is (a
    :class:`orjson.Fragment`)."""
    return orjson.dumps(rows, default=_hex).decode()


def _hex(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _rows(text: str | None) -> list[list[Any]]:
    return orjson.loads(text) if text else []


def _key_columns(keys: Sequence[WorkspaceKey]) -> list[list[Any]]:
    return [[ws for ws, _ in keys], [k.subject_type.value for _, k in keys], [k.subject_id for _, k in keys],
            [k.custom_field_id for _, k in keys]]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to columns, the shape ``unnest`` takes."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]
