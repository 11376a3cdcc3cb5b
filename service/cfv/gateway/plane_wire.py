"""Translation between the Plane face's wire forms and cfv's core: property types, values, value ids, errors.

Pure functions, no I/O: a Plane property is a custom field of ``WorkItem`` subjects scoped to a project,
and a Plane value is the core value of that field, rendered the way Plane clients expect.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cfv.domain.fields import RelationTarget, ValueType

#: Names value ids on this face: the core's integer ids are stable, so the UUIDs derived from them are too.
VALUE_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-5e4f-9a10-c2d3e4f5a6b7")

_CORE_TYPES = {
    "TEXT": ValueType.STRING, "URL": ValueType.URL, "EMAIL": ValueType.EMAIL, "FILE": ValueType.FILE,
    "DATETIME": ValueType.DATETIME, "DECIMAL": ValueType.NUMBER, "BOOLEAN": ValueType.BOOLEAN,
    "RELATION": ValueType.RELATION,
}
_PLANE_TYPES = {core: plane for plane, core in _CORE_TYPES.items()} | {
    ValueType.SINGLE: "OPTION", ValueType.MULTI: "OPTION"}
_RELATION_TARGETS = {"USER": RelationTarget.USER, "ISSUE": RelationTarget.WORK_ITEM}
_RELATION_TYPES = {target: name for name, target in _RELATION_TARGETS.items()}


def core_type(property_type: str, relation_type: str | None, is_multi: bool) -> tuple[ValueType, str | None, bool]:
    """A Plane property type as the core's ``(value_type, relation_target, relation_multi)``."""
    if property_type == "OPTION":
        return (ValueType.MULTI if is_multi else ValueType.SINGLE), None, False
    if property_type == "RELATION":
        assert relation_type is not None
        return ValueType.RELATION, _RELATION_TARGETS[relation_type].value, is_multi
    return _CORE_TYPES[property_type], None, False


def plane_type(value_type: str, relation_target: str | None, relation_multi: bool) -> tuple[str, str | None, bool]:
    """The core's field type as Plane's ``(property_type, relation_type, is_multi)``."""
    core = ValueType(value_type)
    relation_type = _RELATION_TYPES[RelationTarget(relation_target)] if relation_target else None
    is_multi = core is ValueType.MULTI or (core is ValueType.RELATION and relation_multi)
    return _PLANE_TYPES[core], relation_type, is_multi


def render_property(row: Mapping[str, Any]) -> dict[str, Any]:
    """A property (a ``custom_fields`` row of a project) in Plane's form."""
    property_type, relation_type, is_multi = plane_type(row["value_type"], row["relation_target"],
                                                        row["relation_multi"])
    return {
        "id": str(row["uuid"]), "name": _slug(row["name"]), "display_name": row["name"],
        "description": row["description"] or "", "property_type": property_type,
        "relation_type": relation_type, "is_multi": is_multi, "is_required": row["is_required"],
        "default_value": _plane_value(property_type, is_multi, row["default_value"], {}),
        "is_active": row["is_active"], "settings": row["settings"],
        "validation_rules": row["validation_rules"], "external_id": row["external_id"],
        "external_source": row["external_source"], "project": str(row["project_id"]),
        "created_at": _time(row["created_at"]), "updated_at": _time(row["updated_at"]),
    }


def render_option(row: Mapping[str, Any], property_id: uuid.UUID) -> dict[str, Any]:
    """An option (a ``custom_field_choices`` row) in Plane's form."""
    return {
        "id": str(row["uuid"]), "name": row["label"], "description": row["description"],
        "sort_order": row["position"], "is_default": row["is_default"], "is_active": row["is_active"],
        "property": str(property_id), "external_id": row["external_id"],
        "external_source": row["external_source"],
        "created_at": _time(row["created_at"]), "updated_at": _time(row["updated_at"]),
    }


def render_project(row: Mapping[str, Any]) -> dict[str, Any]:
    """A project in Plane's form."""
    return {
        "id": str(row["id"]), "name": row["name"], "identifier": row["identifier"],
        "description": row["description"], "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
    }


def render_values(
    prop: Mapping[str, Any], work_item_id: str, stored: Mapping[str, Any], option_uuids: Mapping[int, str],
) -> dict[str, Any] | list[dict[str, Any]]:
    """A stored value as Plane's value object, or a list of them (one per item) for a multi property.

    ``stored`` holds the core value's ``id``, ``value``, ``external_id``, ``external_source`` and
    ``set_at``; ``option_uuids`` maps the property's choice ids to their UUIDs.
    """
    property_type, _, is_multi = plane_type(prop["value_type"], prop["relation_target"], prop["relation_multi"])
    value = _plane_value(property_type, is_multi, stored["value"], option_uuids)
    base = {
        "property_id": str(prop["uuid"]), "issue_id": work_item_id, "value_type": property_type,
        "external_id": stored["external_id"], "external_source": stored["external_source"],
        "created_at": stored["set_at"], "updated_at": stored["set_at"],
    }
    if is_multi:  # a hidden value (the writer may not read the property) is an empty list
        return [{"id": str(uuid.uuid5(VALUE_NAMESPACE, f"{stored['id']}/{item}")), "value": item, **base}
                for item in value or []]
    return {"id": str(uuid.uuid5(VALUE_NAMESPACE, str(stored["id"]))), "value": value, **base}


def _plane_value(property_type: str, is_multi: bool, value: Any, option_uuids: Mapping[int, str]) -> Any:
    """A canonical core value in Plane's form: options by UUID, a space before the time, one id unlisted."""
    if value is None:
        return None
    if property_type == "OPTION":
        value = [option_uuids.get(choice, str(choice)) for choice in value]
    elif property_type == "DATETIME":
        value = value.replace("T", " ", 1)
    if isinstance(value, list) and not is_multi:  # single option or relation: the core keeps a list of one
        return value[0]
    return value


def error_body(status: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Core error objects in Plane's shape: ``{field: [messages]}`` for 400, else ``{"error": message}``.

    401 and 429 answer ``{"detail": message}``, as Plane (Django REST framework, which also throttles) does.
    """
    if status == 429:
        return {"detail": "; ".join(error["message"] for error in errors)}
    if status == 401:
        return {"detail": errors[0]["message"]}
    if status == 400:
        fields: dict[str, list[str]] = {}
        for error in errors:
            field = _PLANE_FIELDS.get(error.get("field") or "", error.get("field")) or "non_field_errors"
            fields.setdefault(field, []).append(error["message"])
        return fields
    return {"error": "; ".join(error["message"] for error in errors)}


_PLANE_FIELDS = {"custom_field_id": "property_id", "subject_id": "work_item_id", "subject_type": "work_item_id"}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _time(moment: datetime) -> str:
    return moment.isoformat()
