"""Custom field sets on the Kantata face: named, ordered groups of fields of one subject type."""

from __future__ import annotations

from typing import Any

from support import Stack, Workspace
from support.kantata import FIELDS

SETS = "/api/v1/custom_field_sets"


def only(body: dict[str, Any]) -> dict[str, Any]:
    [result] = body["results"]
    assert result["key"] == "custom_field_sets"
    found: dict[str, Any] = body["custom_field_sets"][result["id"]]
    return found


async def test_set_crud_keeps_fields_of_its_subject_type_in_order(stack: Stack, workspace: Workspace,
                                                                  other_workspace: Workspace) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="number")
    risk = await stack.create_field(workspace, name="Risk", subject_type="Story", value_type="string")
    cost = await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="currency")
    theirs = await stack.create_field(other_workspace, name="Size", subject_type="Story", value_type="number")

    status, body, _ = await stack.request("POST", SETS, workspace, json={"custom_field_set": {
        "name": "Planning", "subject_type": "Story", "custom_field_ids": [int(risk["id"]), int(size["id"])]}})
    assert status == 201, body
    created = only(body)
    assert (created["name"], created["subject_type"], created["custom_field_ids"]) == (
        "Planning", "Story", [risk["id"], size["id"]])

    for wrong in (cost, theirs, {"id": "999999"}):
        status, body, _ = await stack.request("POST", SETS, workspace, json={"custom_field_set": {
            "name": "Bad", "subject_type": "Story", "custom_field_ids": [int(size["id"]), int(wrong["id"])]}})
        assert status == 422 and [e["custom_field_id"] for e in body["errors"]] == [int(wrong["id"])], body
    for bad in ({"name": "", "subject_type": "Story"}, {"name": "X", "subject_type": "Nope"},
                {"name": "X", "subject_type": "Story", "custom_field_ids": [True]}, {"name": "X"}):
        status, body, _ = await stack.request("POST", SETS, workspace, json={"custom_field_set": bad})
        assert status == 400, (bad, body)

    path = f"{SETS}/{created['id']}"
    status, body, _ = await stack.request("PATCH", path, workspace, json={"custom_field_set": {
        "name": "Sizing", "custom_field_ids": [int(size["id"])]}})
    assert status == 200 and only(body)["name"] == "Sizing" and only(body)["custom_field_ids"] == [size["id"]]
    status, body, _ = await stack.request("PATCH", path, workspace, json={"custom_field_set": {
        "custom_field_ids": [int(cost["id"])]}})
    assert status == 422, body

    status, body, _ = await stack.request("GET", path, other_workspace)
    assert status == 404, body
    status, body, _ = await stack.request("GET", SETS, workspace)
    assert status == 200 and body["count"] == 1 and list(body["custom_field_sets"]) == [created["id"]]

    status, _, _ = await stack.request("DELETE", f"{FIELDS}/{size['id']}", workspace)
    assert status == 204
    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and only(body)["custom_field_ids"] == []  # a deleted field leaves its sets

    status, body, _ = await stack.request("DELETE", path, other_workspace)
    assert status == 404
    status, body, _ = await stack.request("DELETE", path, workspace)
    assert status == 204
    for method in ("GET", "DELETE"):
        status, body, _ = await stack.request(method, path, workspace)
        assert status == 404, body
    status, body, _ = await stack.request("GET", SETS, workspace)
    assert body["count"] == 0
