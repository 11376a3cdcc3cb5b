"""Field definitions as the domain sees them: what a value must look like to be written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cfv.domain.rules import ValueRules


class SubjectType(StrEnum):
    """The kinds of record a custom field can be attached to."""

    ESTIMATE = "Estimate"
    STORY = "Story"
    USER = "User"
    WORKSPACE = "Workspace"
    WORKSPACE_GROUP = "WorkspaceGroup"
    RESOURCE = "Resource"
    WORK_ITEM = "WorkItem"


#: Each subject type by its name (a dict lookup: calling an enum by value costs fifteen times as much, per item).
SUBJECT_TYPES: Mapping[str, SubjectType] = {t.value: t for t in SubjectType}

#: Subjects identified by a positive integer (Kantata's records); the rest use UUIDs.
INTEGER_ID_SUBJECTS = frozenset(SubjectType) - {SubjectType.WORK_ITEM}


class ValueType(StrEnum):
    """The value types a custom field can hold."""

    STRING = "string"
    URL = "url"
    EMAIL = "email"
    FILE = "file"
    DATE = "date"
    DATETIME = "datetime"
    NUMBER = "number"
    CURRENCY = "currency"
    BOOLEAN = "boolean"
    SINGLE = "single"
    MULTI = "multi"
    RELATION = "relation"


CHOICE_TYPES = frozenset({ValueType.SINGLE, ValueType.MULTI})


class RelationTarget(StrEnum):
    """What a relation field points at."""

    USER = "user"
    WORK_ITEM = "work_item"


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    """A custom field, with what validation needs to know of it.

    ``choice_ids`` are the choices a write may pick (active, not deleted); ``choice_uuids`` maps the UUID of
    every choice of the field to its id, as a write may name choices by UUID. ``required`` fields refuse blank
    values and deletes; inactive fields refuse writes; a ``unique`` field's value belongs to one subject.
    """

    id: int
    workspace_id: int
    name: str
    subject_type: SubjectType
    value_type: ValueType
    choice_ids: frozenset[int] = frozenset()
    relation_target: RelationTarget | None = None
    relation_multi: bool = False
    deleted: bool = False
    active: bool = True
    required: bool = False
    choice_uuids: Mapping[str, int] = field(default_factory=dict)
    rules: ValueRules | None = None
    unique: bool = False
    write_access: str = "account_admin"
    read_access: str = "account_admin"
    project: str | None = None  # a work-item property's project

    @property
    def is_multi(self) -> bool:
        """Whether the field holds a set of items rather than one."""
        return self.value_type is ValueType.MULTI or (
            self.value_type is ValueType.RELATION and self.relation_multi
        )
