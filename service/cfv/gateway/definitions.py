"""The definition core, face-neutral: creating, changing and deleting fields (a Plane property is a field of a
project), their choices (a Plane option is a choice), sets and projects.

Both faces translate a request into a spec (:class:`FieldSpec`, :class:`FieldChanges`, :class:`ChoiceSpec`, …),
call the core, and render what it returns (the stored row) in their own form. The core checks what the rules
decide (access levels that fit the subjects, validation rules, a default value that is a valid value, the
fields a set lists), writes through the store's keyword-only functions (:mod:`cfv.store.fields`,
:mod:`cfv.store.plane`), each change in one transaction (:func:`_changing`), and raises the face-neutral
:class:`ApiError` s the faces render. Deleting a field or a project deletes values, so it goes through the
workers as a command (:class:`~cfv.gateway.submit.Submitter`), like a write.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
import orjson

from cfv.domain.access import default_access, valid_levels
from cfv.domain.definitions import (
    DefinitionChange,
    choice_change,
    definition_event,
    field_change,
    project_change,
    set_change,
)
from cfv.domain.fields import CHOICE_TYPES, FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import InvalidRules, ValueRules, parse_rules, rules_from_storage
from cfv.domain.users import listed, names_users, refused_users
from cfv.domain.values import InvalidValue, validate_value
from cfv.gateway.auth import Principal
from cfv.gateway.errors import ApiError, not_found
from cfv.gateway.submit import Submitted, Submitter
from cfv.store import batches, fields, plane
from cfv.store import events as event_log
from cfv.store.database import Connection
from cfv.store.fields import Row

Pool: TypeAlias = "asyncpg.Pool[Any]"


# --- specs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A field to define. With ``project_id`` it is a field of that project's work items (a Plane property),
    which may carry validation rules (``validation_rules``, as a client sent them)."""

    name: str
    subject_type: SubjectType
    value_type: ValueType
    relation_target: str | None = None
    relation_multi: bool = False
    description: str | None = None
    write_access: str | None = None  # None: the subject type's default
    read_access: str | None = None
    required: bool = False
    default_value: Any = None
    unique: bool = False
    external_id: str | None = None
    external_source: str | None = None
    choices: Sequence[str] = ()
    project_id: uuid.UUID | None = None
    active: bool = True
    settings: Any = None
    validation_rules: Any = None


@dataclass(frozen=True, slots=True)
class FieldChanges:
    """What to change of a field: None keeps each; the default changes only with ``set_default`` (null is a
    default); ``add_choices`` are appended."""

    name: str | None = None
    description: str | None = None
    write_access: str | None = None
    read_access: str | None = None
    required: bool | None = None
    set_default: bool = False
    default_value: Any = None
    external_id: str | None = None
    external_source: str | None = None
    add_choices: Sequence[str] = ()
    active: bool | None = None
    settings: Any = None
    validation_rules: Any = None  # None: keep the field's rules


@dataclass(frozen=True, slots=True)
class ChoiceSpec:
    """A choice to add (a Plane option: with a description, maybe the default, maybe inactive)."""

    label: str
    position: int | None = None  # None: after the last
    description: str | None = None
    is_default: bool = False
    active: bool = True
    external_id: str | None = None
    external_source: str | None = None


@dataclass(frozen=True, slots=True)
class ChoiceChanges:
    """What to change of a choice (None keeps each)."""

    label: str | None = None
    position: int | None = None
    description: str | None = None
    is_default: bool | None = None
    active: bool | None = None
    external_id: str | None = None
    external_source: str | None = None


@dataclass(frozen=True, slots=True)
class SetSpec:
    """A set of fields of one subject type."""

    name: str
    subject_type: str
    field_ids: Sequence[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    """A project (its id chosen by cfv unless given)."""

    name: str
    identifier: str
    description: str | None = None
    id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class ProjectChanges:
    """What to change of a project (None keeps each)."""

    name: str | None = None
    identifier: str | None = None
    description: str | None = None


# --- the transaction of a change ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class By:
    """Who changes definitions: the workspace, the API key acting, the request (for the events' correlationid)."""

    workspace_id: int
    workspace_slug: str
    actor: str
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, request_id: str | None) -> By:
        """The principal's change, made by the request ``request_id``."""
        return cls(principal.workspace_id, principal.workspace_slug, principal.actor, request_id)


class _Change:
    """The transaction of a definition change, and what it announces."""

    def __init__(self, connection: Connection) -> None:
        self.db = connection
        self.announced: list[DefinitionChange] = []

    def announce(self, *changes: DefinitionChange) -> None:
        """Announce ``changes`` (as events, written with the change)."""
        self.announced.extend(changes)


@asynccontextmanager
async def _changing(pool: Pool, by: By) -> AsyncIterator[_Change]:
    """The one transaction a definition change makes: it holds the workspace's lock (the worker's apply lock)
    from the start, so it is ordered with the workspace's writes, and writes the change's events to the event log
    (positions after the last, in commit order) before it commits. The relay is told at commit, as the worker
    tells it. A change that fails announces nothing."""
    async with pool.acquire() as connection, connection.transaction():
        await fields.lock_workspace(connection, workspace_id=by.workspace_id)
        change = _Change(connection)
        yield change
        if change.announced:
            last, now = await event_log.head(connection, workspace_id=by.workspace_id)
            stored = []
            for position, announced in enumerate(change.announced, last + 1):
                routing_key, event = definition_event(
                    announced, event_id=str(uuid.uuid4()), workspace_id=by.workspace_id, slug=by.workspace_slug,
                    position=position, time=now.isoformat(), actor=by.actor, request_id=by.request_id)
                stored.append(event_log.StoredEvent(position, event["id"], event["type"], routing_key,
                                                    orjson.dumps(event).decode()))
            await event_log.append(connection, workspace_id=by.workspace_id, events=stored)


# --- fields -------------------------------------------------------------------------------------------------


async def field_of(db: fields.Db, *, workspace_id: int, field_id: int) -> Row:
    """A live field of the workspace, or 404."""
    row = await fields.get_field(db, workspace_id=workspace_id, field_id=field_id)
    if row is None:
        raise not_found("custom field")
    return row


async def define_field(pool: Pool, by: By, *, spec: FieldSpec, default_hint: str) -> Row:
    """Define a field (with its choices); its row. ``default_hint`` says, in the face's words, what a choice
    field has instead of a default value."""
    workspace_id = by.workspace_id
    subject_type = SubjectType(spec.subject_type)
    write_default, read_default = default_access(subject_type)
    check_levels(subject_type, spec.write_access, spec.read_access)
    is_multi = spec.value_type is ValueType.MULTI or (spec.value_type is ValueType.RELATION and spec.relation_multi)
    rules = checked_rules(spec.value_type, is_multi, spec.validation_rules) if spec.project_id is not None else None
    definition = draft_definition(workspace_id, spec.name, subject_type.value, spec.value_type.value,
                                  spec.relation_target, spec.relation_multi, spec.required, rules)
    default = checked_default(definition, spec.default_value, choices_hint=default_hint)
    async with _changing(pool, by) as change:
        # Read again under the lock: the workers may have deleted the project since the face looked.
        if spec.project_id is not None and await plane.get_project(
                change.db, workspace_id=workspace_id, project_id=spec.project_id) is None:
            raise not_found("project")
        await check_default_users(change.db, definition, default)
        row = await fields.insert_field(
            change.db, workspace_id=workspace_id, project_id=spec.project_id, name=spec.name,
            description=spec.description, subject_type=subject_type.value, value_type=spec.value_type.value,
            relation_target=spec.relation_target, relation_multi=spec.relation_multi,
            write_access=spec.write_access or write_default, read_access=spec.read_access or read_default,
            required=spec.required, default_value=default, unique=spec.unique, active=spec.active,
            settings=spec.settings, validation_rules=rules.as_json() if rules is not None else None,
            external_id=spec.external_id, external_source=spec.external_source)
        change.announce(field_change("created", None, row))
        if spec.choices:
            choices = await fields.insert_choices(change.db, field_id=row["id"], labels=spec.choices, start=0)
            change.announce(*(choice_change("created", row, None, choice) for choice in choices))
    return row


async def change_field(pool: Pool, by: By, *, field_id: int, changes: FieldChanges, default_hint: str) -> Row:
    """Change a field (its type and subject are fixed); its row as changed. The default must still be a valid
    value when only the rules change."""
    workspace_id = by.workspace_id
    async with _changing(pool, by) as change:
        connection = change.db
        row = await field_of(connection, workspace_id=workspace_id, field_id=field_id)
        check_levels(SubjectType(row["subject_type"]), changes.write_access, changes.read_access)
        value_type = ValueType(row["value_type"])
        if changes.add_choices and value_type not in CHOICE_TYPES:
            raise ApiError.one(422, "validation", "only single and multi fields have choices", "add_choices")
        is_multi = value_type is ValueType.MULTI or (value_type is ValueType.RELATION and row["relation_multi"])
        rules = (checked_rules(value_type, is_multi, changes.validation_rules)
                 if changes.validation_rules is not None else rules_from_storage(row["validation_rules"]))
        required = row["is_required"] if changes.required is None else changes.required
        definition = draft_definition(workspace_id, changes.name or row["name"], row["subject_type"],
                                      row["value_type"], row["relation_target"], row["relation_multi"], required,
                                      rules)
        default = checked_default(definition, changes.default_value if changes.set_default else row["default_value"],
                                  choices_hint=default_hint)
        if changes.set_default:
            await check_default_users(connection, definition, default)
        updated = await fields.update_field(
            connection, workspace_id=workspace_id, field_id=field_id, name=changes.name,
            description=changes.description, write_access=changes.write_access, read_access=changes.read_access,
            required=changes.required, active=changes.active, settings=changes.settings,
            validation_rules=rules.as_json() if changes.validation_rules is not None else None,
            default_value=default, set_default=changes.set_default, external_id=changes.external_id,
            external_source=changes.external_source)
        if updated is None:
            raise not_found("custom field")
        change.announce(field_change("updated", row, updated))
        if changes.add_choices:
            start = await fields.next_choice_position(connection, field_id=field_id)
            choices = await fields.insert_choices(connection, field_id=field_id, labels=changes.add_choices,
                                                  start=start)
            change.announce(*(choice_change("created", updated, None, choice) for choice in choices))
    return updated


async def delete_field(submitter: Submitter, principal: Principal, field_id: int, *, idempotency_key: str | None,
                       request_id: str | None, wait: bool) -> Submitted:
    """Have the workers delete a field and all its values (each announced as deleted), in one transaction."""
    return await submitter.delete_field(principal, field_id, idempotency_key=idempotency_key,
                                        request_id=request_id, wait=wait)


def check_levels(subject_type: SubjectType, write_access: str | None, read_access: str | None) -> None:
    """Refuse (422) access levels that cannot apply to the field's subjects (account roles for account subjects,
    project permissions or account_admin for project subjects)."""
    valid = valid_levels(subject_type)
    for name, level in (("write_access", write_access), ("read_access", read_access)):
        if level is not None and level not in valid:
            raise ApiError.one(422, "validation", f"{name} of a {subject_type.value} field is one of "
                               f"{', '.join(valid)}", name)


def checked_rules(value_type: ValueType, is_multi: bool, raw: Any) -> ValueRules:
    """Validation rules as a client sent them, parsed, or a 400 naming every problem."""
    try:
        return parse_rules(value_type, is_multi, raw)
    except InvalidRules as error:
        raise ApiError(400, [{"type": "validation", "message": f"{rule}: {problem}", "field": "validation_rules"}
                             for rule, problem in error.problems.items()]) from None


def draft_definition(workspace_id: int, name: str, subject_type: str, value_type: str,
                     relation_target: str | None, relation_multi: bool, required: bool,
                     rules: ValueRules | None = None) -> FieldDefinition:
    """The definition a field being defined or changed will have, to check its default against."""
    return FieldDefinition(id=0, workspace_id=workspace_id, name=name, subject_type=SubjectType(subject_type),
                           value_type=ValueType(value_type),
                           relation_target=RelationTarget(relation_target) if relation_target else None,
                           relation_multi=relation_multi, required=required, rules=rules)


def checked_default(definition: FieldDefinition, raw: Any, *, choices_hint: str) -> Any:
    """``raw`` as the field's default in canonical form, or a 400 saying why it cannot be.

    Choice fields take no default value (their choices may not exist yet); ``choices_hint`` says what does.
    """
    if raw is None:
        return None
    if definition.value_type in CHOICE_TYPES:
        raise ApiError.one(400, "validation", choices_hint, "default_value")
    try:
        return validate_value(definition, raw)
    except InvalidValue as error:
        raise ApiError.one(400, "validation", str(error), "default_value") from None


async def check_default_users(connection: Connection, definition: FieldDefinition, default: Any) -> None:
    """A 400 unless a user relation's default names active users of the workspace (as a write must)."""
    if default is None or not names_users(definition) or not isinstance(default, list):
        return
    workspace_id = definition.workspace_id
    known = await batches.users_named(connection, [(workspace_id, target) for target in default])
    unknown, inactive = refused_users(workspace_id, default, known)
    if unknown:
        raise ApiError.one(400, "validation", f"no such user in this workspace: {listed(unknown)}", "default_value")
    if inactive:
        raise ApiError.one(400, "validation", f"deactivated user(s) {listed(inactive)} cannot be a default",
                           "default_value")


# --- choices ------------------------------------------------------------------------------------------------


async def _still_there(change: _Change, by: By, field: Row, what: str) -> Row:
    """``field`` as it is under the workspace's lock (the workers may have deleted it since the face read it);
    404 naming ``what`` if it is gone."""
    row = await fields.get_field(change.db, workspace_id=by.workspace_id, field_id=field["id"])
    if row is None:
        raise not_found(what)
    return row


async def define_choice(pool: Pool, by: By, *, field: Row, spec: ChoiceSpec, field_what: str = "custom field") -> Row:
    """Add a choice to a choice field (the faces check it is one, in their words); its row. A single choice
    field has at most one default choice (404 naming ``field_what`` if the field is gone)."""
    async with _changing(pool, by) as change:
        field = await _still_there(change, by, field, field_what)
        row = await fields.insert_choice(
            change.db, field_id=field["id"], label=spec.label, position=spec.position,
            description=spec.description, is_default=spec.is_default, active=spec.active,
            external_id=spec.external_id, external_source=spec.external_source)
        change.announce(choice_change("created", field, None, row))
        if spec.is_default and field["value_type"] == ValueType.SINGLE:
            await _clear_other_defaults(change, field, row["id"])
    return row


async def change_choice(pool: Pool, by: By, *, field: Row, choice_id: int, changes: ChoiceChanges,
                        what: str = "choice") -> Row:
    """Change a choice of ``field``; its row as changed (404 naming ``what`` if it, or its field, is gone, or if
    it is not the field's)."""
    async with _changing(pool, by) as change:
        field = await _still_there(change, by, field, what)
        before = await fields.choice_in_workspace(change.db, workspace_id=by.workspace_id, choice_id=choice_id)
        if before is None or before["custom_field_id"] != field["id"]:
            raise not_found(what)
        updated = await fields.update_choice(
            change.db, choice_id=choice_id, label=changes.label, position=changes.position,
            description=changes.description, is_default=changes.is_default, active=changes.active,
            external_id=changes.external_id, external_source=changes.external_source)
        if updated is None or before is None:
            raise not_found(what)
        change.announce(choice_change("updated", field, before, updated))
        if changes.is_default and field["value_type"] == ValueType.SINGLE:
            await _clear_other_defaults(change, field, choice_id)
    return updated


async def _clear_other_defaults(change: _Change, field: Row, choice_id: int) -> None:
    """Unmark the field's other default choices (a single choice field has at most one), announcing each."""
    defaults = {r["id"]: r for r in await plane.list_options(change.db, field_id=field["id"]) if r["is_default"]}
    for cleared in await plane.clear_other_defaults(change.db, field_id=field["id"], option_id=choice_id):
        change.announce(choice_change("updated", field, defaults.get(cleared["id"], cleared), cleared))


async def delete_choice(pool: Pool, by: By, *, field_id: int, choice_id: int) -> None:
    """Delete a choice (a Kantata choice, a Plane option), or 409 while a current value holds it (404 if it is
    gone).

    Removing a choice silently from values would change data nobody asked to change; refusing says what to do
    instead (change or delete those values first). The check and the deletion hold the workspace's apply lock,
    the one the worker takes for each batch, so no write can slip the choice into a value in between.
    """
    async with _changing(pool, by) as change:
        if await fields.choice_in_use(change.db, field_id=field_id, choice_id=choice_id):
            raise ApiError.one(409, "conflict", "values hold this choice; change or delete them first, or "
                               "deactivate the choice so it can no longer be chosen", "id")
        before = await fields.choice_in_workspace(change.db, workspace_id=by.workspace_id, choice_id=choice_id)
        field = await fields.get_field(change.db, workspace_id=by.workspace_id, field_id=field_id)
        if before is None or field is None or not await fields.delete_choice(change.db, choice_id=choice_id):
            raise not_found("choice")
        change.announce(choice_change("deleted", field, before, None))


# --- sets ---------------------------------------------------------------------------------------------------


async def define_set(pool: Pool, by: By, *, spec: SetSpec) -> int:
    """Create a set; its id."""
    workspace_id = by.workspace_id
    async with _changing(pool, by) as change:
        field_ids = await _checked_fields(change.db, workspace_id, spec.field_ids, spec.subject_type)
        set_id = await fields.insert_set(change.db, workspace_id=workspace_id, name=spec.name,
                                         subject_type=spec.subject_type, field_ids=field_ids)
        change.announce(set_change("created", None, await fields.get_set(change.db, workspace_id=workspace_id,
                                                                         set_id=set_id)))
    return set_id


async def change_set(pool: Pool, by: By, *, set_id: int, name: str | None,
                     field_ids: Sequence[int] | None) -> None:
    """Rename a set, or give it another list of fields (None keeps each)."""
    workspace_id = by.workspace_id
    async with _changing(pool, by) as change:
        connection = change.db
        row = await fields.get_set(connection, workspace_id=workspace_id, set_id=set_id)
        if row is None:
            raise not_found("custom field set")
        checked = None
        if field_ids is not None:
            checked = await _checked_fields(connection, workspace_id, field_ids, row["subject_type"])
        await fields.update_set(connection, workspace_id=workspace_id, set_id=set_id, name=name, field_ids=checked)
        change.announce(set_change("updated", row, await fields.get_set(connection, workspace_id=workspace_id,
                                                                        set_id=set_id)))


async def delete_set(pool: Pool, by: By, *, set_id: int) -> None:
    """Delete a set (its fields stay), or 404."""
    async with _changing(pool, by) as change:
        before = await fields.get_set(change.db, workspace_id=by.workspace_id, set_id=set_id)
        if before is None or not await fields.delete_set(change.db, workspace_id=by.workspace_id, set_id=set_id):
            raise not_found("custom field set")
        change.announce(set_change("deleted", before, None))


async def _checked_fields(connection: Connection, workspace_id: int, field_ids: Sequence[int],
                          subject_type: str) -> list[int]:
    """The ids, without repeats, if each names a live field of the workspace with the set's subject type."""
    unique = list(dict.fromkeys(field_ids))
    known = await fields.fields_for_set(connection, workspace_id=workspace_id,
                                        field_ids=[i for i in unique if 0 < i < 2**63], subject_type=subject_type)
    wrong = [i for i in unique if i not in known]
    if wrong:
        raise ApiError(422, [{"type": "validation", "field": "custom_field_ids", "custom_field_id": i,
                              "message": f"custom field {i} is not a {subject_type} field of this workspace"}
                             for i in wrong])
    return unique


# --- projects -----------------------------------------------------------------------------------------------


async def define_project(pool: Pool, by: By, *, spec: ProjectSpec) -> Row:
    """Create a project; its row (409 if its id or identifier is taken)."""
    async with _changing(pool, by) as change:
        row = await plane.insert_project(change.db, workspace_id=by.workspace_id, project_id=spec.id,
                                         name=spec.name, identifier=spec.identifier, description=spec.description)
        if row is None:
            raise ApiError.one(409, "conflict", "a project with this id or identifier already exists", "identifier")
        change.announce(project_change("created", None, row))
    return row


async def change_project(pool: Pool, by: By, *, project_id: uuid.UUID, changes: ProjectChanges) -> Row:
    """Change a project; its row as changed (409 if the identifier is another project's, 404 if it is gone)."""
    try:
        async with _changing(pool, by) as change:
            before = await plane.get_project(change.db, workspace_id=by.workspace_id, project_id=project_id)
            updated = await plane.update_project(change.db, workspace_id=by.workspace_id, project_id=project_id,
                                                 name=changes.name, identifier=changes.identifier,
                                                 description=changes.description)
            if updated is None or before is None:
                raise not_found("project")
            change.announce(project_change("updated", before, updated))
    except asyncpg.UniqueViolationError:
        raise ApiError.one(409, "conflict", "another project has this identifier", "identifier") from None
    return updated


async def delete_project(submitter: Submitter, principal: Principal, project_id: uuid.UUID, *,
                         idempotency_key: str | None, request_id: str | None, wait: bool) -> Submitted:
    """Have the workers delete a project, its properties and all their values (each announced as deleted), in one
    transaction."""
    return await submitter.delete_project(principal, project_id, idempotency_key=idempotency_key,
                                          request_id=request_id, wait=wait)
