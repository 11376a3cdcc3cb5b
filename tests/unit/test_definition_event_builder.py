"""Definition events, pure (issue 11): each change of a field, property, choice, option, set or project as a
CloudEvent that the wire models (``cfv_schemas.events``) accept, with the type and routing key of its kind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cfv.domain.definitions import (
    CHANGES,
    KINDS,
    DefinitionChange,
    choice_change,
    definition_event,
    event_type,
    field_change,
    project_change,
    set_change,
)
from cfv_schemas.events import (
    DEFINITION_CHANGES,
    DEFINITION_EVENT_TYPES,
    DEFINITION_KINDS,
    ChoiceEvent,
    FieldEvent,
    ProjectEvent,
    SetEvent,
)
from pydantic import BaseModel

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
PROJECT = uuid.UUID("0b7c8d7e-0000-4000-8000-000000000001")


def _field(project: uuid.UUID | None = None, **changes: Any) -> dict[str, Any]:
    return {"id": 12, "uuid": uuid.UUID("0b7c8d7e-0000-4000-8000-000000000012"), "project_id": project,
            "name": "Points", "description": None, "subject_type": "WorkItem" if project else "Story",
            "value_type": "single", "relation_target": None, "relation_multi": False,
            "write_access": "project_admin", "read_access": "project_collaboration", "is_required": False,
            "default_value": None, "unique_constraint": False, "is_active": True, "settings": {},
            "validation_rules": {}, "external_id": None, "external_source": None, "created_at": NOW,
            "updated_at": NOW, **changes}


def _choice(**changes: Any) -> dict[str, Any]:
    return {"id": 40, "uuid": uuid.UUID("0b7c8d7e-0000-4000-8000-000000000040"), "custom_field_id": 12,
            "label": "High", "position": 0, "description": "", "is_default": False, "is_active": True,
            "external_id": None, "external_source": None, "created_at": NOW, "updated_at": NOW, **changes}


SET = {"id": 3, "name": "Planning", "subject_type": "Story", "custom_field_ids": [12], "created_at": NOW,
       "updated_at": NOW}
PROJECT_ROW = {"id": PROJECT, "name": "Web", "identifier": "WEB", "description": "", "created_at": NOW,
               "updated_at": NOW}


def test_the_kinds_and_types_are_the_wire_models() -> None:
    assert KINDS == DEFINITION_KINDS and CHANGES == DEFINITION_CHANGES
    assert tuple(event_type(k, c) for k in KINDS for c in CHANGES) == DEFINITION_EVENT_TYPES


def _event(change: DefinitionChange) -> tuple[str, dict[str, Any]]:
    return definition_event(change, event_id=str(uuid.uuid4()), workspace_id=1, slug="acme", position=9,
                            time=NOW.isoformat(), actor="key:1", request_id="req-1")


@pytest.mark.parametrize(("change", "model", "kind", "object_id"), [
    (field_change("created", None, _field()), FieldEvent, "field", "12"),
    (field_change("updated", _field(), _field(name="Score")), FieldEvent, "field", "12"),
    (field_change("deleted", _field(PROJECT), None), FieldEvent, "property", "12"),
    (choice_change("created", _field(), None, _choice()), ChoiceEvent, "choice", "40"),
    (choice_change("updated", _field(PROJECT), _choice(), _choice(is_default=True)), ChoiceEvent, "option", "40"),
    (set_change("deleted", SET, None), SetEvent, "set", "3"),
    (project_change("created", None, PROJECT_ROW), ProjectEvent, "project", str(PROJECT)),
])
def test_each_change_is_a_cloud_event_of_its_kind(change: DefinitionChange, model: type[BaseModel], kind: str,
                                                  object_id: str) -> None:
    routing_key, event = _event(change)
    parsed: Any = model.model_validate(event)
    assert event["type"] == f"cfv.{kind}.{change.change}.v1"
    assert routing_key == f"acme.definition.{kind}.{object_id}.{change.change}"
    assert len(routing_key.split(".")) == 5  # a value event's has four: "*.*.*.*" binds values only
    assert event["position"] == 9 and event["correlationid"] == "req-1" and event["source"] == "/workspaces/acme"
    data = event["data"]
    assert (data["before"] is None) == (change.change == "created")
    assert (data["after"] is None) == (change.change == "deleted")
    assert data["actor"] == "key:1" and parsed.data.workspace == "acme"


def test_what_the_replay_api_filters_on() -> None:
    _, event = _event(choice_change("created", _field(PROJECT), None, _choice()))
    assert event["data"]["custom_field_id"] == 12 and event["data"]["subject_type"] == "WorkItem"
    assert event["data"]["project_id"] == str(PROJECT)
    assert event["subject"] == "custom_fields/12/choices/40"
    _, event = _event(set_change("created", None, SET))
    assert event["data"]["custom_field_id"] is None and event["data"]["subject_type"] == "Story"
    _, event = _event(project_change("updated", PROJECT_ROW, {**PROJECT_ROW, "name": "Site"}))
    assert event["data"]["subject_type"] is None and event["data"]["before"]["name"] == "Web"
    assert event["data"]["after"]["name"] == "Site" and event["subject"] == f"projects/{PROJECT}"
