"""Change events: CloudEvents 1.0, structured JSON mode, published to the ``cfv.events`` topic exchange.

Routing key: ``{workspace_slug}.{subject_type}.{custom_field_id}.{created|replaced|deleted}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

CONTENT_TYPE = "application/cloudevents+json"
EVENT_TYPES = {
    "created": "cfv.value.created.v1",
    "replaced": "cfv.value.replaced.v1",
    "deleted": "cfv.value.deleted.v1",
}


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

    events: list[ChangeEvent]
    next_after: int
