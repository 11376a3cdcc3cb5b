"""Validating a write command's items against the field definitions, collecting every error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cfv.domain.fields import FieldDefinition, SubjectType
from cfv.domain.values import JSON, InvalidValue, canonical_subject_id, validate_value


class ErrorType(StrEnum):
    """Why an item was refused; the gateway turns these into HTTP statuses."""

    VALIDATION = "validation"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class ItemError:
    """One refused item of a command: which, why, and in which attribute."""

    type: ErrorType
    message: str
    field: str
    index: int | None = None
    custom_field_id: int | None = None


@dataclass(frozen=True, slots=True)
class ValueKey:
    """Where a value lives inside a workspace: one field of one subject."""

    subject_type: SubjectType
    subject_id: str
    custom_field_id: int


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One item of a write as a client sent it (shape checked, content not)."""

    subject_type: str
    subject_id: JSON
    custom_field_id: int
    value: JSON


@dataclass(frozen=True, slots=True)
class ValidWrite:
    """An item that passed validation, with its value in canonical form."""

    index: int
    key: ValueKey
    value: JSON
    definition: FieldDefinition


def validate_items(
    workspace_id: int,
    items: Sequence[WriteItem],
    definitions: Mapping[int, FieldDefinition],
) -> tuple[list[ValidWrite], list[ItemError]]:
    """Check every item; return the valid writes, or every error found (all-or-nothing is the caller's)."""
    valid: list[ValidWrite] = []
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        result = _validate_item(workspace_id, index, item, definitions.get(item.custom_field_id))
        if isinstance(result, ItemError):
            errors.append(result)
        else:
            valid.append(result)
    return valid, errors


def _validate_item(
    workspace_id: int, index: int, item: WriteItem, definition: FieldDefinition | None
) -> ValidWrite | ItemError:
    field_id = item.custom_field_id
    if definition is None or definition.deleted or definition.workspace_id != workspace_id:
        # Another workspace's field is indistinguishable from a missing one, so ids cannot be probed.
        return ItemError(ErrorType.NOT_FOUND, f"custom field {field_id} not found", "custom_field_id",
                         index, field_id)
    try:
        subject_type = SubjectType(item.subject_type)
    except ValueError:
        known = ", ".join(SubjectType)
        return ItemError(ErrorType.VALIDATION, f"subject_type must be one of {known}", "subject_type",
                         index, field_id)
    if subject_type is not definition.subject_type:
        return ItemError(ErrorType.VALIDATION,
                         f"custom field {field_id} applies to {definition.subject_type}, not {subject_type}",
                         "subject_type", index, field_id)
    try:
        subject_id = canonical_subject_id(subject_type, item.subject_id)
    except InvalidValue as error:
        return ItemError(ErrorType.VALIDATION, str(error), "subject_id", index, field_id)
    try:
        value = validate_value(definition, item.value)
    except InvalidValue as error:
        return ItemError(ErrorType.VALIDATION, f"{definition.name}: {error}", "value", index, field_id)
    return ValidWrite(index, ValueKey(subject_type, subject_id, field_id), value, definition)
