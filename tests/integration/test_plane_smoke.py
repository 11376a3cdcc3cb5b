"""The Plane face end to end: a project, a property, a value written, read, replaced, updated and deleted."""

from __future__ import annotations

from support import Stack, Workspace
from support.plane import WORK_ITEM, new_project


async def test_text_value_lifecycle(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="TEXT", display_name="Summary")
    status, first, _ = await plane.write(prop, "hello", external_id="J-1", external_source="jira")
    assert status == 201, first
    assert first["value"] == "hello" and first["property_id"] == prop["id"] and first["issue_id"] == WORK_ITEM
    assert first["value_type"] == "TEXT" and first["external_id"] == "J-1"
    status, second, _ = await plane.write(prop, "again")
    assert status == 200, second
    assert second["id"] != first["id"]
    status, read, _ = await plane.request("GET", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 200 and read == second
    status, patched, _ = await plane.write(prop, "patched", method="PATCH")
    assert status == 200 and patched["value"] == "patched"
    status, _, _ = await plane.request("DELETE", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 204
    status, body, _ = await plane.request("GET", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 404, body
    status, body, _ = await plane.write(prop, "x", method="PATCH")
    assert status == 404, body
    status, body, _ = await plane.request("DELETE", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 404, body


async def test_multi_option_values_answer_lists(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", is_multi=True)
    red = await plane.create_option(prop, "red")
    blue = await plane.create_option(prop, "blue")
    status, body, _ = await plane.write(prop, [red["id"], blue["id"], red["id"]])
    assert status == 201, body
    assert [v["value"] for v in body] == [red["id"], blue["id"]]
    status, body, _ = await plane.write(prop, "not-a-uuid")
    assert status == 400, body
    assert "value" in body
    status, listed, _ = await plane.request("GET", plane.all_values_path(WORK_ITEM))
    assert status == 200 and [v["value"] for v in listed] == [red["id"], blue["id"]]
