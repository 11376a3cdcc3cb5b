"""Planning a batch of commands, without I/O: what to read for it, and, from what was read, each command's
outcome and every row the batch writes.

Each command is all-or-nothing: a command with any invalid item writes nothing and fails, and the rest of the
batch goes on. Commands are applied in the order given, which is the order their workspace's stream delivered
them. A command already recorded for its own key is answered from its record and never applied twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import orjson
from cfv_schemas.commands import Command, DeleteField, DeleteProject, RegisterSubjects, WriteValues
from cfv_schemas.events import EVENT_TYPES

from cfv.contracts import OUTBOX_CHANNEL, Outcome, reply_channel
from cfv.domain.changes import EMPTY, Change, KeyState, StoredValue, fold_command
from cfv.domain.definitions import DefinitionChange, definition_event, field_change, project_change
from cfv.domain.fields import SUBJECT_TYPES, FieldDefinition
from cfv.domain.users import KnownUsers, user_errors, users_named
from cfv.domain.values import InvalidValue, canonical_subject_id
from cfv.domain.writes import (
    ErrorType,
    ExternalRef,
    ItemError,
    Op,
    ValidWrite,
    ValueKey,
    WriteItem,
    failed,
    validate_items,
)
from cfv.store.batches import Deleted, KnownOperation, Loaded, ProjectKey, Reads, WorkspaceKey, Writes, states_of
from cfv.worker.access import BatchAccess, Signer, subjects_of

_NOTIFY_LIMIT = 7_800  # Postgres refuses payloads of 8000 bytes or more
_BIGINT = range(-(2**63), 2**63)
_OPS = {op.value: op for op in Op}


def reads_of(commands: Sequence[Command], signed_by: Sequence[bytes],
             project_fields: Mapping[ProjectKey, Sequence[int]] | None = None) -> Reads:
    """What applying ``commands`` (signed by ``signed_by``) will need read (``project_fields``: the live
    properties of the projects they delete)."""
    return Reads(
        operation_ids=[c.id for c in commands], signers=list(signed_by),
        field_ids=[field_id for c in commands for field_id in _field_ids(c, project_fields or {})],
        keys=[(c.workspace_id, key) for c in commands for key in _keys_named(c)],
        subjects=subjects_of(commands), workspaces=[c.workspace_id for c in commands],
        new_ids=sum(len(c.items) for c in commands if isinstance(c, WriteValues)))


class _Claim(Enum):
    """What a command's id is to it: its own operation done, one to apply, or another's."""

    DONE = "done"  # recorded and settled for this command's key: answered from the record
    NEW = "new"  # unknown, pending for this key, or owned by nobody: applied (taking the record over)
    TAKEN = "taken"  # another workspace's or key's operation (or, in this batch, a copy of another's command)


def claims(commands: Sequence[Command], signed_by: Sequence[bytes],
           known: Mapping[uuid.UUID, KnownOperation]) -> list[_Claim]:
    """The one rule of operation ownership: an operation id belongs to a workspace and the key that signed its
    command. A record owned by nobody (a refusal of an unsigned or unknown-key message) can be taken over; in
    a batch, the first command of an id decides its owner."""
    found = []
    first: dict[uuid.UUID, tuple[int, bytes]] = {}
    for command, key in zip(commands, signed_by, strict=True):
        owner = (command.workspace_id, key)
        record = known.get(command.id)
        if first.setdefault(command.id, owner) != owner:
            found.append(_Claim.TAKEN)
        elif record is None or (record.workspace_id == command.workspace_id and record.public_key is None):
            found.append(_Claim.NEW)
        elif record.workspace_id == command.workspace_id and record.public_key == key:
            found.append(_Claim.NEW if record.status == "pending" else _Claim.DONE)
        else:
            found.append(_Claim.TAKEN)
    return found


@dataclass
class _Prepared:
    command: Command
    public_key: bytes
    writes: list[ValidWrite] = field(default_factory=list)
    outcome: Outcome | None = None  # set when the command is settled without writing
    deleting: list[FieldDefinition] = field(default_factory=list)  # the fields a deletion deletes
    project: uuid.UUID | None = None  # the project a DeleteProject command deletes
    stored_keys: list[ValueKey] = field(default_factory=list)  # and the keys holding their values before the batch
    signer: Signer | None = None  # None: the command's credentials were refused (its outcome says why)
    actor: str = ""  # the setter: the signing key (``key:<id>``), whatever the command says

    @property
    def idempotency_scope(self) -> str:
        """An idempotency key belongs to the API key that sent it (the authenticated actor): another key reusing
        it neither replays the first one's outcome nor is refused for it."""
        return f"{self.actor}|{self.command.idempotency_key}"


@dataclass(frozen=True, slots=True)
class Plan:
    """Each command's outcome, in order, and the rows the batch writes."""

    outcomes: list[Outcome]
    writes: Writes


class BatchPlanner:
    """Decides a batch from what was read for it. Between construction and :meth:`plan`, the caller reads what
    the checks turned out to need: :meth:`idempotency_scopes`, :meth:`deleting`, :meth:`unique_probes`,
    :meth:`keys_to_read` and :meth:`ids_needed`."""

    def __init__(self, commands: Sequence[Command], signed_by: Sequence[bytes], loaded: Loaded,
                 requested: Iterable[WorkspaceKey], project_fields: Mapping[ProjectKey, Sequence[int]] | None = None,
                 ) -> None:
        self._commands = commands
        self._project_fields = project_fields or {}
        self._signed_by = signed_by
        self._loaded = loaded
        self._requested = set(requested)
        self._claims = claims(commands, signed_by, loaded.known)
        self._access = BatchAccess.of(loaded.signers, loaded.memberships, loaded.registrations)
        seen: set[uuid.UUID] = set()
        self._prepared: list[_Prepared] = []
        for command, public_key, claim in zip(commands, signed_by, self._claims, strict=True):
            if claim is _Claim.NEW and command.id not in seen:
                seen.add(command.id)
                self._prepared.append(self._prepare(command, public_key))

    def _prepare(self, command: Command, public_key: bytes) -> _Prepared:
        authenticated = self._access.authenticate(command, public_key)
        if isinstance(authenticated, ItemError):
            return _Prepared(command, public_key, outcome=failed(command.id, [authenticated]))
        p = _validate(command, public_key, self._loaded.definitions, self._project_fields)
        p.signer, p.actor = authenticated, authenticated.actor
        # Refused before its values are read: nobody may make the worker read them.
        refusals = [self._access.project_deletion_error(authenticated, p.project)] if p.project is not None else []
        refusals += [self._access.field_deletion_error(authenticated, d) for d in p.deleting]
        refused = [refusal for refusal in refusals if refusal is not None]
        if p.outcome is None and refused:
            p.outcome, p.deleting, p.project = failed(command.id, refused[:1]), [], None
        return p

    def idempotency_scopes(self) -> list[tuple[int, str]]:
        """The (workspace, scoped idempotency key) of each authenticated command that has one."""
        return [(p.command.workspace_id, p.idempotency_scope) for p in self._prepared
                if p.signer is not None and p.command.idempotency_key is not None]

    def deleting(self) -> list[int]:
        """The fields this batch deletes (each needs its values' keys read)."""
        return [definition.id for p in self._prepared for definition in p.deleting]

    def unique_probes(self) -> list[tuple[int, int, str]]:
        """(workspace, field, value as JSON) of each write to a unique field: the holders of those values are
        needed for the fold."""
        return [(p.command.workspace_id, w.key.custom_field_id, _json(w.value)) for p in self._prepared
                for w in p.writes if w.definition.unique and w.op is Op.WRITE and w.value is not None]

    def keys_to_read(self, deletion_keys: Mapping[int, Sequence[tuple[str, str]]]) -> list[WorkspaceKey]:
        """Keys whose state the fold needs and the first read did not name: the values of deleted fields (and,
        as a safety net, any write's key the commands' own reading missed)."""
        keys: list[WorkspaceKey] = []
        for p in self._prepared:
            if p.deleting:
                p.stored_keys = [ValueKey(SUBJECT_TYPES[t], i, d.id)
                                 for d in p.deleting for t, i in deletion_keys[d.id]]
            keys.extend((p.command.workspace_id, key) for key in [w.key for w in p.writes] + p.stored_keys)
        return [key for key in dict.fromkeys(keys) if key not in self._requested]

    def users_named(self) -> list[tuple[int, int | str]]:
        """(workspace, user id or UUID) of each user the batch's user relations name: each must be looked up."""
        return [named for p in self._prepared for named in users_named(p.command.workspace_id, p.writes)]

    def ids_needed(self) -> int:
        """Value ids beyond the first read's: a field's deletion also deletes the values this batch gives it, at
        most one per write (call after :meth:`keys_to_read`)."""
        writes = sum(len(p.writes) for p in self._prepared)
        return sum(len(p.stored_keys) + writes for p in self._prepared if p.deleting)

    def plan(self, now: datetime, *, idempotency: dict[tuple[int, str], tuple[str, Outcome]],
             more_states: Iterable[Sequence[Any]] = (), more_ids: Sequence[int] = (),
             users: KnownUsers | None = None, deleted: Deleted | None = None) -> Plan:
        """Every command's outcome and the rows to write, given the rows of :meth:`keys_to_read` and
        :meth:`unique_probes` (``more_states``), the ids of :meth:`ids_needed` (``more_ids``), the users of
        :meth:`users_named` (None: the batch names none) and the rows of the fields (:meth:`deleting`) and projects
        the batch deletes (``deleted``, for their deletion events)."""
        states = self._loaded.states
        for workspace_id, found in states_of(more_states).items():
            states.setdefault(workspace_id, {}).update(found)
        ids = iter([*self._loaded.ids, *more_ids])
        access = self._access
        batch = _BatchWrites(now, self._loaded.slugs, dict(self._loaded.heads))
        idempotent: list[_Prepared] = []
        deleted_fields: set[int] = set()
        deleted_projects: set[ProjectKey] = set()
        for p in self._prepared:
            command, signer = p.command, p.signer
            if signer is None:
                continue
            idem = (command.workspace_id, p.idempotency_scope) if command.idempotency_key else None
            if idem is not None and idem in idempotency:
                p.outcome = _replay(command, *idempotency[idem])
                continue
            if isinstance(command, RegisterSubjects):
                refused = access.register(signer, command)
                p.outcome = failed(command.id, refused) if refused else _succeeded(command.id)
                if idem is not None and not refused:
                    idempotency[idem] = (command.request_hash or "", p.outcome)
                    idempotent.append(p)
                continue
            deletion = p.project is not None or bool(p.deleting)
            if p.outcome is None and deletion:
                project = (command.workspace_id, p.project) if p.project is not None else None
                if project in deleted_projects:
                    p.outcome = failed(command.id, [_project_not_found(p.project)])
                    continue
                gone = [_field_not_found(d.id) for d in p.deleting if d.id in deleted_fields]
                if gone and project is None:
                    p.outcome = failed(command.id, gone)
                    continue
                p.deleting = [d for d in p.deleting if d.id not in deleted_fields]  # a project's, deleted earlier
                deleted_fields.update(d.id for d in p.deleting)
                if project is not None:
                    deleted_projects.add(project)
                p.writes = _deletes_of_fields(p.deleting, p.stored_keys, states.get(command.workspace_id, {}))
            elif p.outcome is None and deleted_fields:  # validated before an earlier command deleted its field
                gone = [_field_not_found(w.key.custom_field_id, w.index) for w in p.writes
                        if w.key.custom_field_id in deleted_fields]
                if gone:
                    p.outcome = failed(command.id, gone)
                    continue
            if p.outcome is None:
                forbidden = [] if deletion else access.write_errors(signer, command.workspace_id, p.writes)
                if forbidden:
                    p.outcome = failed(command.id, forbidden)
                    continue
                workspace_states = states.setdefault(command.workspace_id, {})
                if users is not None and not deletion:
                    refused = user_errors(command.workspace_id, p.writes, users, workspace_states)
                    if refused:
                        p.outcome = failed(command.id, refused)
                        continue
                changes, errors = fold_command(workspace_states, p.writes, ids)
                if errors:
                    p.outcome = failed(command.id, errors)
                    continue
                p.outcome = batch.add(command, p.actor, p.writes, changes,
                                      [access.can_read(signer, command.workspace_id, w) for w in p.writes])
                if deletion and deleted is not None:  # after its values' events: the field, then its project
                    ended = [field_change("deleted", deleted.fields[d.id], None) for d in p.deleting
                            if d.id in deleted.fields]
                    if project is not None and project in deleted.projects:
                        ended.append(project_change("deleted", deleted.projects[project], None))
                    batch.announce(command, p.actor, ended)
                if idem is not None:  # only successes are remembered: a refused request may be corrected
                    idempotency[idem] = (command.request_hash or "", p.outcome)
                    idempotent.append(p)
        writes = batch.rows(states)
        writes.registrations = access.registrations
        writes.deleted_fields = sorted(deleted_fields)
        writes.deleted_projects = sorted(deleted_projects)
        outcomes: dict[uuid.UUID, Outcome] = {}
        texts: dict[uuid.UUID, str] = {}  # each outcome serialised once: stored, and sent to its gateway
        for p in self._prepared:
            assert p.outcome is not None
            outcomes[p.command.id] = p.outcome
            texts[p.command.id] = _json(p.outcome)
        # A command refused for its credentials records its failure without settling anyone's operation. Signed
        # by a key of its workspace (revoked, expired) it settles that key's pending operation and owns the
        # record; signed by a stranger, the record is owned by nobody (the genuine command of that id may still
        # come, and takes it over) and no gateway hears of it: gateways sign with their callers' keys.
        strangers = set()
        for p in self._prepared:
            c = p.command
            if p.signer is None:
                of_workspace = access.of_workspace(p.public_key, c.workspace_id)
                if not of_workspace:
                    strangers.add(c.id)
                writes.unauthenticated.append((c.id, c.workspace_id, texts[c.id],
                                               p.public_key if of_workspace else None))
            else:
                writes.operations.append((c.id, c.workspace_id, outcomes[c.id]["status"], orjson.Fragment(texts[c.id]),
                                          p.public_key))
        writes.idempotency_keys = [(p.command.workspace_id, p.idempotency_scope, p.command.request_hash or "",
                                    p.command.id) for p in idempotent]  # after the operations they point at
        for c, claim in zip(self._commands, self._claims, strict=True):
            if claim is _Claim.DONE:
                record = self._loaded.known[c.id]
                assert record.outcome is not None
                outcomes[c.id] = record.outcome
                texts[c.id] = _json(record.outcome)
        writes.notifications = _notifications(
            [c for c, claim in zip(self._commands, self._claims, strict=True)
             if claim is not _Claim.TAKEN and c.id not in strangers], texts, batch.announced)
        return Plan([failed(c.id, [_id_taken()]) if claim is _Claim.TAKEN else outcomes[c.id]
                     for c, claim in zip(self._commands, self._claims, strict=True)], writes)


def _field_ids(command: Command, project_fields: Mapping[ProjectKey, Sequence[int]]) -> list[int]:
    if isinstance(command, DeleteField):
        return [command.custom_field_id]
    if isinstance(command, DeleteProject):
        return list(project_fields.get((command.workspace_id, command.project_id), ()))
    if isinstance(command, RegisterSubjects):
        return []
    return [item.custom_field_id for item in command.items]


def _keys_named(command: Command) -> list[ValueKey]:
    """The keys a command's items name, in canonical form (items that name none are refused later)."""
    if not isinstance(command, WriteValues):
        return []
    keys = []
    for item in command.items:
        subject_type = SUBJECT_TYPES.get(item.subject_type)
        if subject_type is None or item.custom_field_id not in _BIGINT:
            continue
        try:
            keys.append(ValueKey(subject_type, canonical_subject_id(subject_type, item.subject_id),
                                 item.custom_field_id))
        except InvalidValue:
            continue
    return keys


def _id_taken() -> ItemError:
    return ItemError(ErrorType.CONFLICT, "this command id is already the id of another operation; use a new id",
                     "id")


def _field_not_found(field_id: int, index: int | None = None) -> ItemError:
    return ItemError(ErrorType.NOT_FOUND, f"custom field {field_id} not found", "custom_field_id", index, field_id)


def _project_not_found(project: uuid.UUID | None) -> ItemError:
    return ItemError(ErrorType.NOT_FOUND, f"project {project} not found", "project_id")


def _deletes_of_fields(definitions: list[FieldDefinition], stored_keys: list[ValueKey],
                       states: dict[ValueKey, KeyState]) -> list[ValidWrite]:
    """A delete of every value the fields hold now: stored before the batch, or written earlier in it."""
    by_id = {definition.id: definition for definition in definitions}
    keys = dict.fromkeys(stored_keys + [k for k in states if k.custom_field_id in by_id])
    return [ValidWrite(index, key, None, by_id[key.custom_field_id], Op.DELETE) for index, key in enumerate(
        key for key in keys if key.custom_field_id in by_id and states.get(key, EMPTY).current is not None)]


def _validate(command: Command, public_key: bytes, definitions: dict[int, FieldDefinition],
              project_fields: Mapping[ProjectKey, Sequence[int]]) -> _Prepared:
    if isinstance(command, RegisterSubjects):
        return _Prepared(command, public_key)  # checked and applied in order, as registrations change what follows
    if isinstance(command, DeleteProject):
        fields = project_fields.get((command.workspace_id, command.project_id))
        if fields is None:
            return _Prepared(command, public_key, outcome=failed(command.id, [_project_not_found(command.project_id)]))
        deleting = [definitions[f] for f in fields if f in definitions and not definitions[f].deleted]
        return _Prepared(command, public_key, deleting=deleting, project=command.project_id)
    if isinstance(command, DeleteField):
        definition = definitions.get(command.custom_field_id)
        if definition is None or definition.deleted or definition.workspace_id != command.workspace_id:
            return _Prepared(command, public_key,
                             outcome=failed(command.id, [_field_not_found(command.custom_field_id)]))
        return _Prepared(command, public_key, deleting=[definition])
    items = [WriteItem(i.subject_type, i.subject_id, i.custom_field_id, i.value, _OPS[i.op], i.must_exist,
                       ExternalRef(i.external_id, i.external_source), i.expected_version, i.origin)
             for i in command.items]
    valid, errors = validate_items(command.workspace_id, items, definitions)
    if errors:
        return _Prepared(command, public_key, outcome=failed(command.id, errors))
    return _Prepared(command, public_key, writes=valid)


def _replay(command: Command, request_hash: str, original: Outcome) -> Outcome:
    if request_hash != (command.request_hash or ""):
        return failed(command.id, [ItemError(
            ErrorType.CONFLICT,
            "this Idempotency-Key was already used with a different request; use a new key for a new request",
            "Idempotency-Key")])
    return {**original, "id": str(command.id), "replayed_from": original.get("replayed_from") or original["id"]}


class _BatchWrites:
    """The rows a batch will write, gathered as commands are folded."""

    def __init__(self, now: datetime, slugs: Mapping[int, str], heads: dict[int, int]) -> None:
        self._time = now.isoformat()
        self._event_ids = _EventIds()
        self._slugs = slugs
        self._heads = heads
        self._versions: list[tuple[Any, ...]] = []
        self._events: list[tuple[Any, ...]] = []
        self._last_writer: dict[tuple[int, ValueKey], tuple[Command, str, ValidWrite]] = {}
        self.announced: set[int] = set()

    def add(self, command: Command, actor: str, writes: list[ValidWrite], changes: list[Change],
            readable: list[bool]) -> Outcome:
        """Gather a command's changes (made by ``actor``); its outcome shows the values the writer may read (the
        others hidden)."""
        values: list[dict[str, Any]] = []
        workspace_id = command.workspace_id
        slug = self._slugs[workspace_id]
        operation_id = str(command.id)
        for write, change, shown in zip(writes, changes, readable, strict=True):
            key = change.key
            self._versions.append((change.version_id, workspace_id, key.subject_type, key.subject_id,
                                   key.custom_field_id, change.seq, *_stored_columns(change.after), actor,
                                   command.id, write.origin))
            self._last_writer[(workspace_id, key)] = (command, actor, write)
            self._heads[workspace_id] = position = self._heads.get(workspace_id, 0) + 1
            event_id, routing_key, event = _event(self._event_ids.next(), workspace_id, position, operation_id,
                                                  actor, write, change, slug, self._time, command.request_id)
            self._events.append((workspace_id, position, event_id, event["type"], routing_key, _json(event)))
            values.append(_value_out(operation_id, actor, write, change, self._time, hidden=not shown))
        if changes:
            self.announced.add(workspace_id)
        return {"id": operation_id, "status": "succeeded", "values": values, "errors": []}

    def announce(self, command: Command, actor: str, changes: Sequence[DefinitionChange]) -> None:
        """Gather the events of definitions a command changed (made by ``actor``)."""
        workspace_id = command.workspace_id
        for change in changes:
            self._heads[workspace_id] = position = self._heads.get(workspace_id, 0) + 1
            routing_key, event = definition_event(
                change, event_id=self._event_ids.next(), workspace_id=workspace_id, slug=self._slugs[workspace_id],
                position=position, time=self._time, actor=actor, operation_id=str(command.id),
                request_id=command.request_id)
            self._events.append((workspace_id, position, event["id"], event["type"], routing_key, _json(event)))
            self.announced.add(workspace_id)

    def rows(self, states: dict[int, dict[ValueKey, KeyState]]) -> Writes:
        """The versions, current states (each key's after the whole batch) and events to write."""
        current = []
        for (workspace_id, key), (command, actor, write) in self._last_writer.items():
            state = states[workspace_id][key]
            value_id = state.current.id if state.current is not None else None
            current.append((workspace_id, key.subject_type, key.subject_id, key.custom_field_id, state.seq,
                            value_id, *_stored_columns(state.current), actor, command.id, write.origin,
                            write.definition.unique))
        return Writes(versions=self._versions, current=current, events=self._events)


def _notifications(commands: Sequence[Command], outcomes: dict[uuid.UUID, str],
                   announced: set[int]) -> list[tuple[str, str]]:
    """Waiting gateways hear their commands' outcomes (given serialised), and the relay which workspaces have new
    events."""
    by_channel: dict[str, list[tuple[uuid.UUID, str]]] = {}
    for command in commands:
        if command.reply_to:
            by_channel.setdefault(reply_channel(command.reply_to), []).append((command.id, outcomes[command.id]))
    found = [(channel, payload) for channel, channel_outcomes in by_channel.items()
             for payload in _pack(channel_outcomes)]
    if announced:
        found.append((OUTBOX_CHANNEL, ",".join(map(str, sorted(announced)))))
    return found


def reply_payloads(outcomes: Iterable[Outcome]) -> list[str]:
    """Pack outcomes into NOTIFY payloads (JSON arrays) under Postgres's size limit.

    An outcome too large for one payload travels as ``{"id": …, "fetch": true}``: the gateway reads it from
    the operations table instead.
    """
    return _pack((outcome["id"], _json(outcome)) for outcome in outcomes)


def _pack(outcomes: Iterable[tuple[uuid.UUID | str, str]]) -> list[str]:
    """Serialised outcomes (each with its operation's id) packed into payloads."""
    payloads: list[str] = []
    parts: list[str] = []
    size = 2
    for operation_id, text in outcomes:
        length = len(text) if text.isascii() else len(text.encode())
        if length > _NOTIFY_LIMIT - 2:
            text = _json({"id": str(operation_id), "fetch": True})
            length = len(text)
        if parts and size + length + 1 > _NOTIFY_LIMIT:
            payloads.append("[" + ",".join(parts) + "]")
            parts, size = [], 2
        parts.append(text)
        size += length + 1
    if parts:
        payloads.append("[" + ",".join(parts) + "]")
    return payloads


def _stored_columns(stored: StoredValue | None) -> tuple[Any, str | None, str | None]:
    """A value's ``value, external_id, external_source`` columns; all null for a deleted one."""
    if stored is None:
        return None, None, None
    return stored.value, stored.external.id, stored.external.source


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _succeeded(command_id: uuid.UUID) -> Outcome:
    return {"id": str(command_id), "status": "succeeded", "values": [], "errors": []}


def _value_out(operation_id: str, actor: str, write: ValidWrite, change: Change, time: str, *,
               hidden: bool = False) -> dict[str, Any]:
    """The value a change left (for a delete: the one it removed, with a null value); ``hidden``: the writer may
    not read the field, so the value is not shown (a multi choice edit, say, would show the whole set)."""
    definition = write.definition
    stored = change.after or change.before
    assert stored is not None
    return {
        "change": change.kind, "id": stored.id, "subject_type": change.key.subject_type,
        "subject_id": change.key.subject_id, "custom_field_id": definition.id,
        "custom_field_name": definition.name, "value_type": definition.value_type,
        "value": change.after.value if change.after and not hidden else None,
        "external_id": stored.external.id, "external_source": stored.external.source, "origin": write.origin,
        "sequence": change.seq, "setter": actor, "hidden": hidden, "operation_id": operation_id, "created_at": time,
    }


def _ref(stored: StoredValue | None) -> dict[str, Any] | None:
    if stored is None:
        return None
    return {"id": stored.id, "value": stored.value, "external_id": stored.external.id,
            "external_source": stored.external.source}


class _EventIds:
    """The ids of a batch's events: one random version 4 UUID, its last 32 bits counting the events (a fresh
    uuid4 each costs a system call for its randomness; 90 random bits per batch keep them unique)."""

    def __init__(self) -> None:
        base = uuid.uuid4().hex
        self._prefix = f"{base[:8]}-{base[8:12]}-{base[12:16]}-{base[16:20]}-{base[20:24]}"
        self._count = 0

    def next(self) -> str:
        """The next id."""
        self._count += 1
        return f"{self._prefix}{self._count:08x}"


def _event(event_id: str, workspace_id: int, position: int, operation_id: str, actor: str, write: ValidWrite,
           change: Change, slug: str, time: str, request_id: str | None) -> tuple[str, str, dict[str, Any]]:
    key = change.key
    routing_key = f"{slug}.{key.subject_type}.{key.custom_field_id}.{change.kind}"
    event = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/workspaces/{slug}",
        "type": EVENT_TYPES[change.kind],
        "subject": f"{key.subject_type}/{key.subject_id}/custom_fields/{key.custom_field_id}",
        "time": time,
        "datacontenttype": "application/json",
        "position": position,
        "data": {
            "workspace_id": workspace_id, "workspace": slug,
            "subject_type": key.subject_type, "subject_id": key.subject_id,
            "custom_field_id": key.custom_field_id, "value_type": write.definition.value_type,
            "sequence": change.seq,
            "before": _ref(change.before),
            "after": _ref(change.after),
            "setter": actor, "origin": write.origin, "operation_id": operation_id,
        },
    }
    if request_id is not None:
        event["correlationid"] = request_id
    return event_id, routing_key, event
