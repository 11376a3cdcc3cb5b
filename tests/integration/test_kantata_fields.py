"""Custom field definitions through the Kantata face: create, list, read, change, delete."""

from __future__ import annotations

from typing import Any

from cfv_schemas.kantata import CustomFieldOut
from support import Stack, Workspace
from support.kantata import FIELDS, assert_errors_shape, item, write


def only_field(body: dict[str, Any]) -> dict[str, Any]:
    """The single field of a Kantata answer, checked against the listing format."""
    assert body["count"] == 1
    assert body["meta"] == {"count": 1, "page_count": 1, "page_number": 1, "page_size": 1}
    [ref] = body["results"]
    assert ref["key"] == "custom_fields"
    assert list(body["custom_fields"]) == [ref["id"]]
    field: dict[str, Any] = body["custom_fields"][ref["id"]]
    assert field["id"] == ref["id"]
    CustomFieldOut.model_validate(field)
    return field


async def test_create_answers_201_in_kantata_format_and_stores_the_field(stack: Stack, workspace: Workspace,
                                                                          db: Any) -> None:
    status, body, headers = await stack.request("POST", FIELDS, workspace, json={"custom_field": {
        "name": "  Colour  ", "subject_type": "Story", "value_type": "multi", "description": "paint",
        "choices": ["red", {"label": "green"}, "blue"], "write_access": "financial",
        "read_access": "time_logging"}})
    assert status == 201, body
    assert headers["Content-Type"].startswith("application/json")
    field = only_field(body)
    assert field["name"] == "Colour"  # surrounding whitespace stripped
    assert field["description"] == "paint"
    assert (field["subject_type"], field["value_type"]) == ("Story", "multi")
    assert (field["write_access"], field["read_access"]) == ("financial", "time_logging")
    assert field["relation_target"] is None and field["relation_multi"] is False
    assert [(c["label"], c["position"]) for c in field["choices"]] == [("red", 0), ("green", 1), ("blue", 2)]
    assert all(isinstance(c["id"], str) and c["id"].isdigit() for c in field["choices"])

    row = await db.fetchrow("SELECT * FROM custom_fields WHERE id = $1", int(field["id"]))
    assert row["workspace_id"] == workspace.id and row["name"] == "Colour" and row["deleted_at"] is None
    labels = await db.fetch("SELECT label FROM custom_field_choices WHERE custom_field_id = $1 ORDER BY position",
                            int(field["id"]))
    assert [r["label"] for r in labels] == ["red", "green", "blue"]


async def test_relation_field_keeps_its_target(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Reviewers", subject_type="WorkItem", value_type="relation",
                                     relation_target="user", relation_multi=True)
    assert field["relation_target"] == "user" and field["relation_multi"] is True
    assert field["choices"] == []


DEFAULT_ACCESS = {
    "Story": ("project_admin", "project_collaboration"),
    "Workspace": ("project_admin", "project_collaboration"),
    "Resource": ("project_admin", "project_collaboration"),
    "Estimate": ("account_admin", "account_admin"),
    "User": ("account_admin", "account_admin"),
    "WorkspaceGroup": ("account_admin", "account_admin"),
}


async def test_default_access_follows_the_subject_type(stack: Stack, workspace: Workspace) -> None:
    for subject_type, expected in DEFAULT_ACCESS.items():
        field = await stack.create_field(workspace, name="Notes", subject_type=subject_type, value_type="string")
        assert (field["write_access"], field["read_access"]) == expected, subject_type
        status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
        assert status == 200
        stored = only_field(body)
        assert (stored["write_access"], stored["read_access"]) == expected, subject_type


async def test_explicit_access_overrides_only_what_is_given(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Budget", subject_type="Estimate", value_type="currency",
                                     read_access="reports_viewer_with_cost")
    assert (field["write_access"], field["read_access"]) == ("account_admin", "reports_viewer_with_cost")


BAD_DEFINITIONS = [
    ({"value_type": "single"}, "needs at least one choice"),
    ({"value_type": "multi", "choices": []}, "needs at least one choice"),
    ({"value_type": "relation"}, "relation_target is required"),
    ({"value_type": "string", "relation_target": "user"}, "relation_target is required"),
    ({"value_type": "string", "choices": ["a"]}, "only single and multi"),
    ({"value_type": "number", "relation_multi": True}, "relation_multi"),
    ({"value_type": "colour"}, "value_type"),
    ({"value_type": "string", "subject_type": "Planet"}, "subject_type"),
    ({"value_type": "string", "name": "   "}, "name"),
    ({"value_type": "string", "write_access": "everyone"}, "write_access"),
    ({"value_type": "string", "colour": "red"}, "colour"),
    ({"value_type": "string", "name": "nul\x00name"}, "name"),
    ({"value_type": "string", "description": "nul\x00"}, "description"),
    ({"value_type": "single", "choices": ["ok", "nul\x00"]}, "choices"),
]


async def test_bad_definitions_answer_400_and_store_nothing(stack: Stack, workspace: Workspace, db: Any) -> None:
    for spec, mentions in BAD_DEFINITIONS:
        definition = {"name": "Bad", "subject_type": "Story", **spec}
        status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": definition})
        assert status == 400, (spec, body)
        errors = assert_errors_shape(body)
        assert all(e["type"] == "validation" for e in errors), errors
        assert any(mentions in (e["message"] + " " + (e["field"] or "")) for e in errors), (spec, errors)
    assert await db.fetchval("SELECT count(*) FROM custom_fields") == 0
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices") == 0


async def test_create_without_the_custom_field_key_is_400(stack: Stack, workspace: Workspace) -> None:
    status, body, _ = await stack.request("POST", FIELDS, workspace, json={"name": "Loose", "value_type": "string",
                                                                            "subject_type": "Story"})
    assert status == 400
    errors = assert_errors_shape(body)
    assert any(e["field"] == "custom_field" for e in errors), errors


async def test_get_by_id_answers_the_field_and_404_for_unknown(stack: Stack, workspace: Workspace) -> None:
    created = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="single",
                                       choices=["S", "M", "L"])
    status, body, _ = await stack.request("GET", f"{FIELDS}/{created['id']}", workspace)
    assert status == 200
    assert only_field(body) == created

    for missing in (str(int(created["id"]) + 1000), "abc", "-1", "9" * 30):
        status, body, _ = await stack.request("GET", f"{FIELDS}/{missing}", workspace)
        assert status == 404, (missing, body)
        assert assert_errors_shape(body)[0]["type"] == "not_found"


async def test_list_is_paginated_in_kantata_format(stack: Stack, workspace: Workspace,
                                                   other_workspace: Workspace) -> None:
    made = [await stack.create_field(workspace, name=f"F{n}", subject_type="Story", value_type="number")
            for n in range(5)]
    await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="number")

    status, body, _ = await stack.request("GET", f"{FIELDS}?page=2&per_page=2", workspace)
    assert status == 200, body
    assert body["count"] == 5
    assert body["meta"] == {"count": 5, "page_count": 3, "page_number": 2, "page_size": 2}
    assert [r["id"] for r in body["results"]] == [made[2]["id"], made[3]["id"]]
    assert all(r["key"] == "custom_fields" for r in body["results"])
    assert set(body["custom_fields"]) == {made[2]["id"], made[3]["id"]}
    assert body["custom_fields"][made[3]["id"]]["name"] == "F3"

    status, body, _ = await stack.request("GET", f"{FIELDS}?page=3&per_page=2", workspace)
    assert [r["id"] for r in body["results"]] == [made[4]["id"]]

    status, body, _ = await stack.request("GET", FIELDS, workspace)  # defaults: page 1, 20 per page
    assert body["meta"] == {"count": 5, "page_count": 1, "page_number": 1, "page_size": 20}
    assert [r["id"] for r in body["results"]] == [f["id"] for f in made]
    assert "Theirs" not in {f["name"] for f in body["custom_fields"].values()}

    status, body, _ = await stack.request("GET", f"{FIELDS}?page=9", workspace)
    assert status == 200 and body["count"] == 5 and body["results"] == [] and body["custom_fields"] == {}


async def test_bad_pagination_is_400(stack: Stack, workspace: Workspace) -> None:
    for query in ("page=0", "page=-1", "per_page=0", "per_page=201", "page=one", "per_page=2.5"):
        status, body, _ = await stack.request("GET", f"{FIELDS}?{query}", workspace)
        assert status == 400, (query, body)
        assert assert_errors_shape(body)[0]["type"] == "validation"
    status, body, _ = await stack.request("GET", f"{FIELDS}?per_page=200", workspace)
    assert status == 200 and body["meta"]["page_size"] == 200


async def test_patch_changes_name_description_and_access(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Old", subject_type="Story", value_type="string",
                                     description="before")
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace, json={"custom_field": {
        "name": "New", "write_access": "time_logging"}})
    assert status == 200, body
    changed = only_field(body)
    assert changed["name"] == "New" and changed["write_access"] == "time_logging"
    assert changed["description"] == "before" and changed["read_access"] == field["read_access"]
    assert changed["value_type"] == "string" and changed["subject_type"] == "Story"
    assert changed["updated_at"] > field["updated_at"]

    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace, json={"custom_field": {
        "description": "after", "read_access": "project_collaboration"}})
    assert status == 200
    changed = only_field(body)
    assert (changed["name"], changed["description"], changed["read_access"]) == (
        "New", "after", "project_collaboration")

    status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
    assert only_field(body) == changed


async def test_patch_refuses_what_is_fixed_at_creation(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Fixed", subject_type="Story", value_type="number")
    for change in ({"value_type": "string"}, {"subject_type": "User"}, {"write_access": "root"},
                   {"name": "nul\x00"}, {"add_choices": ["nul\x00"]}):
        status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace,
                                              json={"custom_field": change})
        assert status == 400, (change, body)
        assert_errors_shape(body)
    status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
    assert only_field(body) == field


async def test_patch_add_choices_makes_them_writable(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Tags", subject_type="Story", value_type="multi",
                                     choices=["a", "b"])
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace, json={"custom_field": {
        "add_choices": ["c", {"label": "d"}]}})
    assert status == 200, body
    choices = only_field(body)["choices"]
    assert [(c["label"], c["position"]) for c in choices] == [("a", 0), ("b", 1), ("c", 2), ("d", 3)]
    assert [c["id"] for c in choices[:2]] == [c["id"] for c in field["choices"]]

    new_ids = [int(c["id"]) for c in choices[2:]]
    status, body, _ = await write(stack, workspace, item(field, new_ids))
    assert status == 200, body
    assert next(iter(body["custom_field_values"].values()))["value"] == new_ids


async def test_patch_add_choices_to_a_non_choice_field_is_422(stack: Stack, workspace: Workspace,
                                                              db: Any) -> None:
    field = await stack.create_field(workspace, name="Plain", subject_type="Story", value_type="string")
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace, json={"custom_field": {
        "name": "Renamed", "add_choices": ["x"]}})
    assert status == 422, body
    [error] = assert_errors_shape(body)
    assert error["field"] == "add_choices"
    # The refusal changed nothing, not even the name sent alongside.
    assert await db.fetchval("SELECT name FROM custom_fields WHERE id = $1", int(field["id"])) == "Plain"
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices") == 0


async def test_delete_answers_204_then_the_field_is_gone(stack: Stack, workspace: Workspace, db: Any) -> None:
    field = await stack.create_field(workspace, name="Doomed", subject_type="Story", value_type="number")
    kept = await stack.create_field(workspace, name="Kept", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(field, 1))
    assert status == 200, body

    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)
    assert (status, body) == (204, None)

    status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
    assert status == 404 and assert_errors_shape(body)[0]["type"] == "not_found"
    status, body, _ = await stack.request("GET", FIELDS, workspace)
    assert body["count"] == 1 and list(body["custom_fields"]) == [kept["id"]]
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace,
                                          json={"custom_field": {"name": "Back"}})
    assert status == 404
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)
    assert status == 404

    status, body, _ = await write(stack, workspace, item(field, 2))
    assert status == 404, body
    [error] = assert_errors_shape(body)
    assert error["type"] == "not_found" and error["custom_field_id"] == int(field["id"])
    assert await db.fetchval("SELECT count(*) FROM value_versions WHERE value IS NOT NULL") == 1  # the earlier write
    assert await db.fetchval("SELECT count(*) FROM value_versions WHERE value IS NULL") == 1  # and its deletion


async def test_another_workspaces_field_is_404_everywhere(stack: Stack, workspace: Workspace,
                                                          other_workspace: Workspace, db: Any) -> None:
    theirs = await stack.create_field(other_workspace, name="Secret", subject_type="Story", value_type="string")
    missing = str(int(theirs["id"]) + 1000)
    answers = {}
    for field_id in (theirs["id"], missing):
        for method, json in (("GET", None), ("PATCH", {"custom_field": {"name": "Mine"}}), ("DELETE", None)):
            status, body, _ = await stack.request(method, f"{FIELDS}/{field_id}", workspace, json=json)
            answers[(field_id, method)] = (status, body)
    for method in ("GET", "PATCH", "DELETE"):
        assert answers[(theirs["id"], method)] == answers[(missing, method)]  # indistinguishable
        assert answers[(theirs["id"], method)][0] == 404
    row = await db.fetchrow("SELECT name, deleted_at FROM custom_fields WHERE id = $1", int(theirs["id"]))
    assert row["name"] == "Secret" and row["deleted_at"] is None
