"""Checking a field's default value when a face defines or changes a field: like any value of it."""

from __future__ import annotations

from typing import Any

from cfv.domain.fields import CHOICE_TYPES, FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import ValueRules
from cfv.domain.users import listed, names_users, refused_users
from cfv.domain.values import InvalidValue, validate_value
from cfv.gateway.errors import ApiError
from cfv.store import batches
from cfv.store.database import Connection


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
