"""Change events: CloudEvents 1.0, structured JSON mode, published to the ``cfv.events`` topic exchange.

Value events: type ``cfv.value.{created|replaced|deleted}.v1``, routing key
``{workspace_slug}.{subject_type}.{custom_field_id}.{created|replaced|deleted}`` (four words).

Definition events: type ``cfv.{kind}.{created|updated|deleted}.v1``, ``kind`` one of :data:`DEFINITION_KINDS`,
routing key ``{workspace_slug}.definition.{kind}.{id}.{created|updated|deleted}`` (five words, so ``*.*.*.*``
binds value events only and ``{slug}.definition.#`` definition events only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPES = {
    "created": "cfv.value.created.v1",
    "replaced": "cfv.value.replaced.v1",
    "deleted": "cfv.value.deleted.v1",
}

#: What a definition event is about. A Plane property is a field of a project's work items, and is announced as a
#: ``property`` whichever face changed it; its choices as ``option`` s. A field of no project is a ``field``, its
#: choices ``choice`` s.
DEFINITION_KINDS = ("field", "choice", "set", "project", "property", "option")
DEFINITION_CHANGES = ("created", "updated", "deleted")
DEFINITION_EVENT_TYPES = tuple(f"cfv.{kind}.{change}.v1" for kind in DEFINITION_KINDS for change in DEFINITION_CHANGES)


class ValueRef(BaseModel):
    """A value and its id, before or after a change."""

    model_config = ConfigDict(frozen=True)

    id: int
    value: Any
    external_id: str | None = None
    external_source: str | None = None


class ValueChange(BaseModel):
    """The data of a change event."""

    model_config = ConfigDict(frozen=True)

    workspace_id: int
    workspace: str = Field(description="the workspace's slug")
    subject_type: str
    subject_id: str
    custom_field_id: int
    value_type: str
    sequence: int = Field(description="per (subject, field): +1 with each change, so a gap is visible")
    before: ValueRef | None
    after: ValueRef | None
    setter: str
    origin: str | None = Field(default=None, description="the origin the change was made with, if any")
    operation_id: UUID


class ChangeEvent(BaseModel):
    """A CloudEvents 1.0 envelope around a :class:`ValueChange`."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str = Field(description="/workspaces/{slug}")
    type: Literal["cfv.value.created.v1", "cfv.value.replaced.v1", "cfv.value.deleted.v1"]
    subject: str = Field(description="{subject_type}/{subject_id}/custom_fields/{custom_field_id}")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    position: int | None = Field(default=None, description=(
        "extension attribute: the event's place in its workspace's event log, strictly increasing in commit "
        "order (GET /api/v1/events?after=POSITION reads from there); absent on events made before it existed"))
    correlationid: str | None = Field(default=None, description=(
        "extension attribute: the id of the request that made the change (its X-Request-ID, or the command's "
        "request_id); absent when the command carried none"))
    data: ValueChange


class FieldState(BaseModel):
    """A field (or a Plane property: a field of ``project_id``) as stored, before or after a change."""

    model_config = ConfigDict(frozen=True)

    id: int
    uuid: UUID = Field(description="its id on the Plane face")
    project_id: UUID | None = Field(description="the project of a Plane property; null for a field")
    name: str
    description: str | None
    subject_type: str
    value_type: str
    relation_target: str | None
    relation_multi: bool
    write_access: str
    read_access: str
    required: bool
    default_value: Any
    unique: bool
    active: bool
    settings: dict[str, Any]
    validation_rules: dict[str, Any]
    external_id: str | None
    external_source: str | None
    created_at: datetime
    updated_at: datetime


class ChoiceState(BaseModel):
    """A choice (or a Plane option) as stored, before or after a change."""

    model_config = ConfigDict(frozen=True)

    id: int
    uuid: UUID = Field(description="its id on the Plane face")
    custom_field_id: int
    label: str
    position: int
    description: str
    is_default: bool
    active: bool
    external_id: str | None
    external_source: str | None
    created_at: datetime
    updated_at: datetime


class SetState(BaseModel):
    """A custom field set as stored, before or after a change."""

    model_config = ConfigDict(frozen=True)

    id: int
    name: str
    subject_type: str
    custom_field_ids: list[int] = Field(description="its live fields, in order")
    created_at: datetime
    updated_at: datetime


class ProjectState(BaseModel):
    """A Plane project as stored, before or after a change."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    name: str
    identifier: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class _DefinitionData(BaseModel):
    model_config = ConfigDict(frozen=True)

    workspace_id: int
    workspace: str = Field(description="the workspace's slug")
    custom_field_id: int | None = Field(description=(
        "the field the change concerns (a field, property, choice or option event); the replay API shows it only "
        "to readers of that field"))
    subject_type: str | None = Field(description="the subject type of the field or set; null for a project")
    project_id: UUID | None = Field(description="the project of a project, property or option event")
    actor: str = Field(description="the API key that made the change")
    operation_id: UUID | None = Field(description=(
        "the operation of a deletion the workers applied (fields, properties, projects); null otherwise"))


class FieldChange(_DefinitionData):
    """The data of a field or property event: ``before`` is null when created, ``after`` when deleted."""

    before: FieldState | None
    after: FieldState | None


class ChoiceChange(_DefinitionData):
    """The data of a choice or option event."""

    before: ChoiceState | None
    after: ChoiceState | None


class SetChange(_DefinitionData):
    """The data of a set event."""

    before: SetState | None
    after: SetState | None


class ProjectChange(_DefinitionData):
    """The data of a project event."""

    before: ProjectState | None
    after: ProjectState | None


class _DefinitionEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: UUID
    source: str = Field(description="/workspaces/{slug}")
    subject: str = Field(description=(
        "custom_fields/{id}, custom_fields/{custom_field_id}/choices/{id}, custom_field_sets/{id} or projects/{id}"))
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    position: int = Field(description="extension attribute: the event's place in its workspace's event log")
    correlationid: str | None = Field(default=None, description=(
        "extension attribute: the id of the request that made the change, if it carried one"))


class FieldEvent(_DefinitionEvent):
    """A field (``cfv.field.*``) or a Plane property (``cfv.property.*``) created, updated or deleted."""

    type: Literal["cfv.field.created.v1", "cfv.field.updated.v1", "cfv.field.deleted.v1",
                  "cfv.property.created.v1", "cfv.property.updated.v1", "cfv.property.deleted.v1"]
    data: FieldChange


class ChoiceEvent(_DefinitionEvent):
    """A choice (``cfv.choice.*``) or a Plane option (``cfv.option.*``) created, updated or deleted."""

    type: Literal["cfv.choice.created.v1", "cfv.choice.updated.v1", "cfv.choice.deleted.v1",
                  "cfv.option.created.v1", "cfv.option.updated.v1", "cfv.option.deleted.v1"]
    data: ChoiceChange


class SetEvent(_DefinitionEvent):
    """A custom field set created, updated or deleted."""

    type: Literal["cfv.set.created.v1", "cfv.set.updated.v1", "cfv.set.deleted.v1"]
    data: SetChange


class ProjectEvent(_DefinitionEvent):
    """A Plane project created, updated or deleted."""

    type: Literal["cfv.project.created.v1", "cfv.project.updated.v1", "cfv.project.deleted.v1"]
    data: ProjectChange


DefinitionEvent = Annotated[FieldEvent | ChoiceEvent | SetEvent | ProjectEvent, Field(discriminator="type")]


class EventsQuery(BaseModel):
    """The query of ``GET /api/v1/events``: where to start, how many, and which."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: int | None = Field(default=None, ge=0, description=(
        "read the events after this position (omitted: from the oldest kept)"))
    limit: int = Field(default=100, ge=1, le=1000, description="most events in the answer")
    type: str | None = Field(default=None, description="comma-separated event types, e.g. cfv.value.deleted.v1")
    subject_type: str | None = Field(default=None, description="only events of this subject type")
    custom_field_id: str | None = Field(default=None, description="comma-separated field ids")


class EventsPage(BaseModel):
    """The answer of ``GET /api/v1/events``: events in position order, and the position to read after next
    (the last one looked at, shown or not: events of fields the caller may not read are left out)."""

    events: list[Annotated[ChangeEvent | FieldEvent | ChoiceEvent | SetEvent | ProjectEvent,
                           Field(discriminator="type")]]
    next_after: int
