"""Definition events, pure: what a change of a field, choice, set or project announces, as a CloudEvent.

A definition is announced by what it is, whichever face changed it: a field of a project's work items (a Plane
property) as a ``property``, its choices as ``option`` s; a field of no project as a ``field``, its choices as
``choice`` s; sets as ``set`` s and projects as ``project`` s. Type ``cfv.{kind}.{created|updated|deleted}.v1``,
routing key ``{slug}.definition.{kind}.{id}.{change}`` (five words: value events' keys have four), ``data`` the
object's state ``before`` and ``after`` (null when created, resp. deleted) beside what the replay API filters on
(``custom_field_id``, ``subject_type``) and who made the change. The schemas are ``cfv_schemas.events``'s
(``FieldEvent`` …); a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Row = Mapping[str, Any]

KINDS = ("field", "choice", "set", "project", "property", "option")
CHANGES = ("created", "updated", "deleted")


def event_type(kind: str, change: str) -> str:
    """The CloudEvents type of a definition event."""
    assert kind in KINDS and change in CHANGES, (kind, change)
    return f"cfv.{kind}.{change}.v1"


@dataclass(frozen=True, slots=True)
class DefinitionChange:
    """One definition changed: what it is (``kind``), how (``change``), and its state before and after."""

    kind: str
    change: str
    object_id: str
    subject: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    custom_field_id: int | None = None
    subject_type: str | None = None
    project_id: str | None = None


def _time(moment: Any) -> Any:
    return moment.isoformat() if isinstance(moment, datetime) else moment


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def field_state(row: Row) -> dict[str, Any]:
    """A ``custom_fields`` row as an event shows it."""
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "project_id": _text(row["project_id"]), "name": row["name"],
        "description": row["description"], "subject_type": row["subject_type"], "value_type": row["value_type"],
        "relation_target": row["relation_target"], "relation_multi": row["relation_multi"],
        "write_access": row["write_access"], "read_access": row["read_access"], "required": row["is_required"],
        "default_value": row["default_value"], "unique": row["unique_constraint"], "active": row["is_active"],
        "settings": row["settings"], "validation_rules": row["validation_rules"],
        "external_id": row["external_id"], "external_source": row["external_source"],
        "created_at": _time(row["created_at"]), "updated_at": _time(row["updated_at"]),
    }


def choice_state(row: Row) -> dict[str, Any]:
    """A ``custom_field_choices`` row as an event shows it."""
    return {
        "id": row["id"], "uuid": str(row["uuid"]), "custom_field_id": row["custom_field_id"], "label": row["label"],
        "position": row["position"], "description": row["description"], "is_default": row["is_default"],
        "active": row["is_active"], "external_id": row["external_id"], "external_source": row["external_source"],
        "created_at": _time(row["created_at"]), "updated_at": _time(row["updated_at"]),
    }


def set_state(row: Row) -> dict[str, Any]:
    """A set (a ``list_sets`` row: its live fields) as an event shows it."""
    return {"id": row["id"], "name": row["name"], "subject_type": row["subject_type"],
            "custom_field_ids": list(row["custom_field_ids"]), "created_at": _time(row["created_at"]),
            "updated_at": _time(row["updated_at"])}


def project_state(row: Row) -> dict[str, Any]:
    """A ``projects`` row as an event shows it."""
    return {"id": str(row["id"]), "name": row["name"], "identifier": row["identifier"],
            "description": row["description"], "created_at": _time(row["created_at"]),
            "updated_at": _time(row["updated_at"])}


def field_change(change: str, before: Row | None, after: Row | None) -> DefinitionChange:
    """A field (or a Plane property) created, updated or deleted."""
    row = after if after is not None else before
    assert row is not None
    return DefinitionChange(
        kind="property" if row["project_id"] is not None else "field", change=change, object_id=str(row["id"]),
        subject=f"custom_fields/{row['id']}", before=field_state(before) if before is not None else None,
        after=field_state(after) if after is not None else None, custom_field_id=row["id"],
        subject_type=row["subject_type"], project_id=_text(row["project_id"]))


def choice_change(change: str, field: Row, before: Row | None, after: Row | None) -> DefinitionChange:
    """A choice (or a Plane option) of ``field`` created, updated or deleted."""
    row = after if after is not None else before
    assert row is not None
    return DefinitionChange(
        kind="option" if field["project_id"] is not None else "choice", change=change, object_id=str(row["id"]),
        subject=f"custom_fields/{field['id']}/choices/{row['id']}",
        before=choice_state(before) if before is not None else None,
        after=choice_state(after) if after is not None else None, custom_field_id=field["id"],
        subject_type=field["subject_type"], project_id=_text(field["project_id"]))


def set_change(change: str, before: Row | None, after: Row | None) -> DefinitionChange:
    """A set created, updated or deleted."""
    row = after if after is not None else before
    assert row is not None
    return DefinitionChange(
        kind="set", change=change, object_id=str(row["id"]), subject=f"custom_field_sets/{row['id']}",
        before=set_state(before) if before is not None else None,
        after=set_state(after) if after is not None else None, subject_type=row["subject_type"])


def project_change(change: str, before: Row | None, after: Row | None) -> DefinitionChange:
    """A project created, updated or deleted."""
    row = after if after is not None else before
    assert row is not None
    return DefinitionChange(
        kind="project", change=change, object_id=str(row["id"]), subject=f"projects/{row['id']}",
        before=project_state(before) if before is not None else None,
        after=project_state(after) if after is not None else None, project_id=str(row["id"]))


def definition_event(change: DefinitionChange, *, event_id: str, workspace_id: int, slug: str, position: int,
                     time: str, actor: str, operation_id: str | None = None,
                     request_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """The routing key and the CloudEvent of ``change``, at ``position`` of the workspace's log."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"/workspaces/{slug}",
        "type": event_type(change.kind, change.change),
        "subject": change.subject,
        "time": time,
        "datacontenttype": "application/json",
        "position": position,
        "data": {
            "workspace_id": workspace_id, "workspace": slug, "custom_field_id": change.custom_field_id,
            "subject_type": change.subject_type, "project_id": change.project_id, "actor": actor,
            "operation_id": operation_id, "before": change.before, "after": change.after,
        },
    }
    if request_id is not None:
        event["correlationid"] = request_id
    return f"{slug}.definition.{change.kind}.{change.object_id}.{change.change}", event
