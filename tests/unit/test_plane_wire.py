"""The Plane face's translation: property types both ways, value objects, value ids, and error shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cfv.domain.fields import ValueType
from cfv.gateway.plane_wire import core_type, error_body, plane_type, render_values
from cfv_schemas.plane import ValueOut

PLANE_TYPES = [
    ("TEXT", None, False, ValueType.STRING, None, False),
    ("URL", None, False, ValueType.URL, None, False),
    ("EMAIL", None, False, ValueType.EMAIL, None, False),
    ("FILE", None, False, ValueType.FILE, None, False),
    ("DATETIME", None, False, ValueType.DATETIME, None, False),
    ("DECIMAL", None, False, ValueType.NUMBER, None, False),
    ("BOOLEAN", None, False, ValueType.BOOLEAN, None, False),
    ("OPTION", None, False, ValueType.SINGLE, None, False),
    ("OPTION", None, True, ValueType.MULTI, None, False),
    ("RELATION", "USER", False, ValueType.RELATION, "user", False),
    ("RELATION", "USER", True, ValueType.RELATION, "user", True),
    ("RELATION", "ISSUE", False, ValueType.RELATION, "work_item", False),
    ("RELATION", "ISSUE", True, ValueType.RELATION, "work_item", True),
]


@pytest.mark.parametrize(("property_type", "relation_type", "is_multi", "value_type", "target", "multi"),
                         PLANE_TYPES)
def test_property_types_translate_both_ways(property_type: str, relation_type: str | None, is_multi: bool,
                                            value_type: ValueType, target: str | None, multi: bool) -> None:
    assert core_type(property_type, relation_type, is_multi) == (value_type, target, multi)
    assert plane_type(value_type.value, target, multi) == (property_type, relation_type, is_multi)


PROPERTY_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
WORK_ITEM = "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e10"
OPTION_A, OPTION_B = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"


def prop(value_type: str, relation_target: str | None = None, relation_multi: bool = False) -> dict[str, Any]:
    return {"uuid": PROPERTY_ID, "value_type": value_type, "relation_target": relation_target,
            "relation_multi": relation_multi}


def stored(value: Any, value_id: int = 41) -> dict[str, Any]:
    return {"id": value_id, "value": value, "external_id": "J-1", "external_source": "jira",
            "set_at": datetime(2026, 1, 2, tzinfo=UTC).isoformat()}


@pytest.mark.parametrize(("field", "value", "rendered"), [
    (prop("string"), "hello", "hello"),
    (prop("number"), 2.5, 2.5),
    (prop("boolean"), False, False),
    (prop("datetime"), "2026-01-02", "2026-01-02"),
    (prop("datetime"), "2026-01-02T10:30:00", "2026-01-02 10:30:00"),
    (prop("single"), [1], OPTION_A),
    (prop("relation", "user"), [WORK_ITEM], WORK_ITEM),
])
def test_single_values_render_one_object(field: dict[str, Any], value: Any, rendered: Any) -> None:
    body = render_values(field, WORK_ITEM, stored(value), {1: OPTION_A, 2: OPTION_B})
    assert isinstance(body, dict)
    ValueOut.model_validate(body)
    assert body["value"] == rendered
    assert (body["property_id"], body["issue_id"]) == (str(PROPERTY_ID), WORK_ITEM)
    assert (body["external_id"], body["external_source"]) == ("J-1", "jira")


def test_multi_values_render_one_object_per_item_with_ids_new_per_write() -> None:
    first = render_values(prop("multi"), WORK_ITEM, stored([2, 1]), {1: OPTION_A, 2: OPTION_B})
    again = render_values(prop("multi"), WORK_ITEM, stored([2, 1]), {1: OPTION_A, 2: OPTION_B})
    later = render_values(prop("multi"), WORK_ITEM, stored([2, 1], value_id=42), {1: OPTION_A, 2: OPTION_B})
    assert isinstance(first, list) and isinstance(later, list)
    assert [v["value"] for v in first] == [OPTION_B, OPTION_A]
    assert all(v["value_type"] == "OPTION" for v in first)
    assert first == again  # ids are derived from the stored value: stable across reads
    assert len({v["id"] for v in first + later}) == 4  # and new with every write


def test_errors_take_plane_shapes() -> None:
    errors = [{"type": "validation", "message": "must be a number", "field": "value"},
              {"type": "validation", "message": "too long", "field": "value"},
              {"type": "validation", "message": "bad body", "field": None},
              {"type": "validation", "message": "unknown", "field": "custom_field_id"}]
    assert error_body(400, errors) == {"value": ["must be a number", "too long"], "non_field_errors": ["bad body"],
                                       "property_id": ["unknown"]}
    assert error_body(404, [{"type": "not_found", "message": "property not found", "field": None}]) == {
        "error": "property not found"}
    assert error_body(401, [{"type": "authentication", "message": "no key", "field": None}]) == {
        "detail": "no key"}
