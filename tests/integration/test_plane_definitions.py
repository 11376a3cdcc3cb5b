"""Definitions on the Plane face: projects, work-item properties and their options.

CRUD of the three resources and what each answers, every validation rule (at creation and on PATCH), Plane's
error shapes (400 ``{field: [messages]}``, 404 ``{"error"}``, 401 ``{"detail"}``), tenant isolation on every
endpoint, and that a deleted property or project takes no more values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pytest
from support import Stack, Workspace, add_users
from support.plane import WORK_ITEM, Plane, a_uuid, new_project, projects_path

API = "/api/v1/workspaces"
U1, U2, U3 = (str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))


# --- answer shapes ------------------------------------------------------------------------------------


def assert_400(body: Any, *fields: str) -> None:
    """Plane's 400: an object mapping field names to non-empty lists of messages, naming one of ``fields``."""
    assert isinstance(body, dict) and body, body
    for key, messages in body.items():
        assert isinstance(key, str) and key, body
        assert isinstance(messages, list) and messages, body
        assert all(isinstance(m, str) and m for m in messages), body
    assert any(field in body for field in fields), (fields, body)


def assert_404(body: Any) -> None:
    """Plane's 404: ``{"error": "..."}`` and nothing else."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"], body


def assert_401(body: Any) -> None:
    """Plane's (DRF's) 401: ``{"detail": "..."}`` and nothing else."""
    assert isinstance(body, dict) and set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"], body


def is_uuid(text: Any) -> bool:
    try:
        return isinstance(text, str) and str(uuid.UUID(text)) == text
    except ValueError:
        return False


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def get(plane: Plane, path: str) -> Any:
    status, body, _ = await plane.request("GET", path)
    assert status == 200, (path, body)
    return body


# --- projects -----------------------------------------------------------------------------------------


async def test_project_crud(stack: Stack, workspace: Workspace) -> None:
    projects = projects_path(workspace)
    status, created, headers = await stack.request("POST", projects, workspace, json={
        "name": "Website", "identifier": "web", "description": "the public site"})
    assert status == 201, created
    assert headers["Content-Type"].startswith("application/json")
    assert is_uuid(created["id"])
    assert (created["name"], created["identifier"], created["description"]) == ("Website", "WEB", "the public site")
    assert moment(created["created_at"]) <= moment(created["updated_at"])
    path = f"{projects}{created['id']}/"

    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and body == created
    status, body, _ = await stack.request("GET", projects, workspace)
    assert status == 200 and body == {"count": 1, "total_results": 1, "results": [created]}

    status, patched, _ = await stack.request("PATCH", path, workspace, json={
        "name": "Web site", "identifier": "site2", "description": ""})
    assert status == 200, patched
    assert (patched["id"], patched["name"], patched["identifier"], patched["description"]) == (
        created["id"], "Web site", "SITE2", "")
    assert patched["created_at"] == created["created_at"]
    assert moment(patched["updated_at"]) > moment(created["updated_at"])
    status, body, _ = await stack.request("PATCH", path, workspace, json={})
    assert status == 200 and {k: body[k] for k in ("name", "identifier", "description")} == {
        "name": "Web site", "identifier": "SITE2", "description": ""}
    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and body["identifier"] == "SITE2" and body["name"] == "Web site"

    status, body, _ = await stack.request("DELETE", path, workspace)
    assert status == 204 and body is None
    for method, json in (("GET", None), ("PATCH", {"name": "again"}), ("DELETE", None)):
        status, body, _ = await stack.request(method, path, workspace, json=json)
        assert status == 404, (method, body)
        assert_404(body)
    status, body, _ = await stack.request("GET", projects, workspace)
    assert status == 200 and body == {"count": 0, "total_results": 0, "results": []}


async def test_project_minimal_body_and_client_chosen_id(stack: Stack, workspace: Workspace) -> None:
    projects = projects_path(workspace)
    status, minimal, _ = await stack.request("POST", projects, workspace, json={"name": "A", "identifier": "A1"})
    assert status == 201 and minimal["description"] == "" and minimal["identifier"] == "A1", minimal
    chosen = a_uuid()
    status, body, _ = await stack.request("POST", projects, workspace, json={
        "id": chosen.upper(), "name": "B", "identifier": "abcdefghij12"})
    assert status == 201, body
    assert body["id"] == chosen and body["identifier"] == "ABCDEFGHIJ12"
    status, fetched, _ = await stack.request("GET", f"{projects}{chosen}/", workspace)
    assert status == 200 and fetched == body
    status, listed, _ = await stack.request("GET", projects, workspace)
    assert [p["id"] for p in listed["results"]] == [minimal["id"], chosen]


@pytest.mark.parametrize("second", [
    pytest.param({"name": "Other", "identifier": "OTHER", "id": "same"}, id="same-id"),
    pytest.param({"name": "Other", "identifier": "WEB"}, id="same-identifier"),
    pytest.param({"name": "Other", "identifier": "web"}, id="same-identifier-other-case"),
])
async def test_duplicate_project_is_409(stack: Stack, workspace: Workspace, second: dict[str, Any]) -> None:
    projects = projects_path(workspace)
    first_id = a_uuid()
    status, first, _ = await stack.request("POST", projects, workspace, json={
        "id": first_id, "name": "Web", "identifier": "WEB"})
    assert status == 201, first
    if second.get("id") == "same":
        second = {**second, "id": first_id}
    status, body, _ = await stack.request("POST", projects, workspace, json=second)
    assert status == 409, body
    assert isinstance(body, dict) and set(body) == {"error"} and body["error"], body
    status, listed, _ = await stack.request("GET", projects, workspace)
    assert listed["results"] == [first]


async def test_patch_to_a_taken_identifier_is_409(stack: Stack, workspace: Workspace) -> None:
    web = await new_project(stack, workspace, "WEB")
    await new_project(stack, workspace, "APP")
    status, body, _ = await web.request("PATCH", web.project, {"identifier": "app"})
    assert status == 409, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert (await get(web, web.project))["identifier"] == "WEB"
    status, body, _ = await web.request("PATCH", web.project, {"identifier": "web", "name": "Kept"})
    assert status == 200 and body["identifier"] == "WEB" and body["name"] == "Kept", body


async def test_identifier_and_id_are_free_again_after_delete_and_per_workspace(
        stack: Stack, workspace: Workspace, other_workspace: Workspace) -> None:
    chosen = a_uuid()
    status, body, _ = await stack.request("POST", projects_path(workspace), workspace,
                                          json={"id": chosen, "name": "Web", "identifier": "WEB"})
    assert status == 201, body
    # Another tenant may use the same identifier and even the same id: ids are per workspace.
    status, theirs, _ = await stack.request("POST", projects_path(other_workspace), other_workspace,
                                            json={"id": chosen, "name": "Theirs", "identifier": "WEB"})
    assert status == 201 and theirs["id"] == chosen, theirs
    status, _, _ = await stack.request("DELETE", f"{projects_path(workspace)}{chosen}/", workspace)
    assert status == 204
    status, again, _ = await stack.request("POST", projects_path(workspace), workspace,
                                           json={"name": "Web again", "identifier": "WEB"})
    assert status == 201 and again["identifier"] == "WEB", again
    # Their project survived ours being deleted.
    status, body, _ = await stack.request("GET", f"{projects_path(other_workspace)}{chosen}/", other_workspace)
    assert status == 200 and body == theirs


BAD_PROJECTS = [
    pytest.param({"identifier": "WEB"}, ("name",), id="no-name"),
    pytest.param({"name": "", "identifier": "WEB"}, ("name",), id="empty-name"),
    pytest.param({"name": "   ", "identifier": "WEB"}, ("name",), id="blank-name"),
    pytest.param({"name": "x" * 256, "identifier": "WEB"}, ("name",), id="long-name"),
    pytest.param({"name": "Web"}, ("identifier",), id="no-identifier"),
    pytest.param({"name": "Web", "identifier": ""}, ("identifier",), id="empty-identifier"),
    pytest.param({"name": "Web", "identifier": "ABCDEFGHIJKLM"}, ("identifier",), id="13-char-identifier"),
    pytest.param({"name": "Web", "identifier": "WE-B"}, ("identifier",), id="dash-identifier"),
    pytest.param({"name": "Web", "identifier": "WE B"}, ("identifier",), id="space-identifier"),
    pytest.param({"name": "Web", "identifier": "WÉB"}, ("identifier",), id="non-ascii-identifier"),
    pytest.param({"name": "Web", "identifier": 12}, ("identifier",), id="number-identifier"),
    pytest.param({"name": "Web", "identifier": "WEB", "id": "not-a-uuid"}, ("id",), id="bad-id"),
    pytest.param({"name": "Web", "identifier": "WEB", "description": 5}, ("description",), id="bad-description"),
    pytest.param({"name": "Web", "identifier": "WEB", "lead": "bob"}, ("lead",), id="unknown-field"),
]


@pytest.mark.parametrize(("spec", "fields"), BAD_PROJECTS)
async def test_bad_project_is_400_and_creates_nothing(stack: Stack, workspace: Workspace, spec: dict[str, Any],
                                                      fields: tuple[str, ...]) -> None:
    status, body, _ = await stack.request("POST", projects_path(workspace), workspace, json=spec)
    assert status == 400, body
    assert_400(body, *fields)
    status, listed, _ = await stack.request("GET", projects_path(workspace), workspace)
    assert listed["count"] == 0 and listed["results"] == []


@pytest.mark.parametrize(("patch", "fields"), [
    pytest.param({"name": ""}, ("name",), id="empty-name"),
    pytest.param({"identifier": "TOO-LONG-IDENT"}, ("identifier",), id="bad-identifier"),
    pytest.param({"identifier": ""}, ("identifier",), id="empty-identifier"),
    pytest.param({"description": ["x"]}, ("description",), id="bad-description"),
    pytest.param({"id": "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e11"}, ("id",), id="id-is-not-patchable"),
    pytest.param({"colour": "red"}, ("colour",), id="unknown-field"),
])
async def test_bad_project_patch_is_400_and_changes_nothing(stack: Stack, workspace: Workspace,
                                                            patch: dict[str, Any], fields: tuple[str, ...]) -> None:
    plane = await new_project(stack, workspace)
    before = await get(plane, plane.project)
    status, body, _ = await plane.request("PATCH", plane.project, patch)
    assert status == 400, body
    assert_400(body, *fields)
    assert await get(plane, plane.project) == before


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b"[]", b"null"])
async def test_malformed_bodies_are_400_in_plane_shape(stack: Stack, workspace: Workspace, raw: bytes) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION")
    for path in (projects_path(workspace), plane.project, f"{plane.project}work-item-properties/",
                 plane.property_path(prop["id"]), plane.property_path(prop["id"]) + "options/"):
        method = "PATCH" if path in (plane.project, plane.property_path(prop["id"])) else "POST"
        status, body, _ = await stack.request(method, path, workspace, data=raw,
                                              headers={"Content-Type": "application/json"})
        assert status == 400, (path, body)
        assert_400(body, "non_field_errors")


async def test_deleting_a_project_deletes_its_properties_and_values_404(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    text = await plane.create_property(property_type="TEXT")
    colour = await plane.create_property(property_type="OPTION")
    red = await plane.create_option(colour, "red")
    status, body, _ = await plane.write(text, "hello")
    assert status == 201, body
    status, _, _ = await plane.request("DELETE", plane.project)
    assert status == 204
    checks = [
        ("GET", f"{plane.project}work-item-properties/", None),
        ("POST", f"{plane.project}work-item-properties/", {"display_name": "New", "property_type": "TEXT"}),
        ("GET", plane.property_path(text["id"]), None),
        ("PATCH", plane.property_path(text["id"]), {"display_name": "X"}),
        ("GET", plane.property_path(colour["id"]) + "options/", None),
        ("GET", plane.property_path(colour["id"]) + f"options/{red['id']}/", None),
        ("POST", plane.values_path(WORK_ITEM, text["id"]), {"value": "again"}),
        ("PATCH", plane.values_path(WORK_ITEM, text["id"]), {"value": "again"}),
        ("GET", plane.values_path(WORK_ITEM, text["id"]), None),
        ("DELETE", plane.values_path(WORK_ITEM, text["id"]), None),
        ("POST", plane.values_path(WORK_ITEM, colour["id"]), {"value": red["id"]}),
        ("GET", plane.all_values_path(WORK_ITEM), None),
        ("DELETE", plane.property_path(text["id"]), None),
    ]
    for method, path, json in checks:
        status, body, _ = await plane.request(method, path, json)
        assert status == 404, (method, path, body)
        assert_404(body)
    # A new project with the same identifier starts empty.
    fresh = await new_project(stack, workspace)
    assert fresh.project_id != plane.project_id
    assert await get(fresh, f"{fresh.project}work-item-properties/") == []
    assert await get(fresh, fresh.all_values_path(WORK_ITEM)) == []


# --- properties ---------------------------------------------------------------------------------------


async def test_property_crud(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    properties = f"{plane.project}work-item-properties/"
    status, created, _ = await plane.request("POST", properties, {
        "display_name": "Story Points", "description": "effort", "property_type": "DECIMAL",
        "is_required": True, "default_value": 3, "is_active": True,
        "settings": {"format": "0.0", "nested": {"a": [1, 2]}}, "validation_rules": {"min": 0, "max": 100},
        "external_id": "cf-1", "external_source": "jira"})
    assert status == 201, created
    assert is_uuid(created["id"])
    expected = {"name": "story_points", "display_name": "Story Points", "description": "effort",
                "property_type": "DECIMAL", "relation_type": None, "is_multi": False, "is_required": True,
                "default_value": 3, "is_active": True, "settings": {"format": "0.0", "nested": {"a": [1, 2]}},
                "validation_rules": {"min": 0, "max": 100}, "external_id": "cf-1", "external_source": "jira",
                "project": plane.project_id}
    assert {k: created[k] for k in expected} == expected
    assert moment(created["created_at"]) <= moment(created["updated_at"])

    status, minimal, _ = await plane.request("POST", properties, {"display_name": "Notes", "property_type": "TEXT"})
    assert status == 201, minimal
    assert {k: minimal[k] for k in ("name", "description", "relation_type", "is_multi", "is_required",
                                    "default_value", "is_active", "settings", "validation_rules",
                                    "external_id", "external_source")} == {
        "name": "notes", "description": "", "relation_type": None, "is_multi": False, "is_required": False,
        "default_value": None, "is_active": True, "settings": {}, "validation_rules": {}, "external_id": None,
        "external_source": None}

    assert await get(plane, plane.property_path(created["id"])) == created
    assert await get(plane, properties) == [created, minimal]

    status, patched, _ = await plane.request("PATCH", plane.property_path(created["id"]), {
        "display_name": "Points", "description": "", "is_required": False, "is_active": False,
        "settings": {"format": "0"}, "validation_rules": {"max": 10}, "default_value": 8,
        "external_id": "cf-2", "external_source": "linear"})
    assert status == 200, patched
    assert {k: patched[k] for k in expected} == {
        **expected, "name": "points", "display_name": "Points", "description": "", "is_required": False,
        "is_active": False, "settings": {"format": "0"}, "validation_rules": {"max": 10}, "default_value": 8,
        "external_id": "cf-2", "external_source": "linear"}
    assert patched["id"] == created["id"] and patched["created_at"] == created["created_at"]
    assert moment(patched["updated_at"]) > moment(created["updated_at"])
    assert await get(plane, plane.property_path(created["id"])) == patched

    status, body, _ = await plane.request("DELETE", plane.property_path(created["id"]))
    assert status == 204 and body is None
    for method, json in (("GET", None), ("PATCH", {"display_name": "Again"}), ("DELETE", None)):
        status, body, _ = await plane.request(method, plane.property_path(created["id"]), json)
        assert status == 404, (method, body)
        assert_404(body)
    assert await get(plane, properties) == [minimal]


async def test_patch_of_one_attribute_keeps_the_others(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="TEXT", description="d", default_value="abc",
                                       validation_rules={"max_length": 5}, settings={"k": "v"},
                                       external_id="e", external_source="s", is_required=True)
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {"display_name": "Renamed"})
    assert status == 200, body
    assert body == {**prop, "name": "renamed", "display_name": "Renamed", "updated_at": body["updated_at"]}
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {"default_value": None})
    assert status == 200 and body["default_value"] is None and body["validation_rules"] == {"max_length": 5}
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {"validation_rules": {}})
    assert status == 200 and body["validation_rules"] == {}, body
    assert (await get(plane, plane.property_path(prop["id"])))["validation_rules"] == {}


GOOD_PROPERTIES = [
    pytest.param({"property_type": "TEXT", "default_value": "hi",
                  "validation_rules": {"min_length": 0, "max_length": 5, "regex": "[a-z]*"}},
                 ("TEXT", None, False), id="text"),
    pytest.param({"property_type": "TEXT", "default_value": ""}, ("TEXT", None, False), id="text-empty-default"),
    pytest.param({"property_type": "URL", "default_value": "https://example.com/a",
                  "validation_rules": {"max_length": 200}}, ("URL", None, False), id="url"),
    pytest.param({"property_type": "EMAIL", "default_value": "bob@acme.com",
                  "validation_rules": {"regex": ".*@acme\\.com"}}, ("EMAIL", None, False), id="email"),
    pytest.param({"property_type": "FILE", "default_value": "report.pdf", "validation_rules": {"min_length": 1}},
                 ("FILE", None, False), id="file"),
    pytest.param({"property_type": "DATETIME", "default_value": "2024-05-01 10:00:00",
                  "validation_rules": {"min_date": "2024-01-01", "max_date": "2024-12-31"}},
                 ("DATETIME", None, False), id="datetime"),
    pytest.param({"property_type": "DATETIME", "validation_rules": {"min_date": "2024-03-03",
                                                                    "max_date": "2024-03-03"}},
                 ("DATETIME", None, False), id="datetime-one-day-window"),
    pytest.param({"property_type": "DECIMAL", "default_value": 2.5, "validation_rules": {"min": -1.5, "max": 10}},
                 ("DECIMAL", None, False), id="decimal"),
    pytest.param({"property_type": "DECIMAL", "default_value": 0, "validation_rules": {"min": 0, "max": 0}},
                 ("DECIMAL", None, False), id="decimal-zero"),
    pytest.param({"property_type": "BOOLEAN", "default_value": False}, ("BOOLEAN", None, False), id="boolean"),
    pytest.param({"property_type": "OPTION"}, ("OPTION", None, False), id="option"),
    pytest.param({"property_type": "OPTION", "is_multi": True, "validation_rules": {"max_count": 2}},
                 ("OPTION", None, True), id="option-multi"),
    pytest.param({"property_type": "RELATION", "relation_type": "USER"}, ("RELATION", "USER", False),
                 id="relation-user"),
    pytest.param({"property_type": "RELATION", "relation_type": "ISSUE", "is_multi": True,
                  "default_value": [U1, U2], "validation_rules": {"max_count": 3}},
                 ("RELATION", "ISSUE", True), id="relation-issue-multi"),
    pytest.param({"property_type": "RELATION", "relation_type": "USER", "is_multi": False,
                  "is_required": True}, ("RELATION", "USER", False), id="relation-user-required"),
]


@pytest.mark.parametrize(("spec", "kind"), GOOD_PROPERTIES)
async def test_each_type_is_created_with_its_default_and_rules(stack: Stack, workspace: Workspace,
                                                               spec: dict[str, Any], kind: tuple[Any, ...]) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**spec)
    assert (prop["property_type"], prop["relation_type"], prop["is_multi"]) == kind
    assert prop["default_value"] == spec.get("default_value")
    assert prop["validation_rules"] == spec.get("validation_rules", {})
    assert prop["is_required"] is spec.get("is_required", False)
    assert await get(plane, plane.property_path(prop["id"])) == prop


async def test_single_relation_default_is_kept(stack: Stack, workspace: Workspace, db: Any) -> None:
    plane = await new_project(stack, workspace)
    await add_users(db, workspace.id, uuids=[U1])  # a user relation's default names a user of the workspace
    prop = await plane.create_property(property_type="RELATION", relation_type="USER", default_value=U1)
    # A single relation's default reads like its values: a bare UUID.
    assert prop["default_value"] == U1, prop
    assert await get(plane, plane.property_path(prop["id"])) == prop


BAD_PROPERTY_BODIES = [
    pytest.param({}, ("display_name", "property_type"), id="empty"),
    pytest.param({"property_type": "TEXT"}, ("display_name",), id="no-display-name"),
    pytest.param({"display_name": "", "property_type": "TEXT"}, ("display_name",), id="empty-display-name"),
    pytest.param({"display_name": "X"}, ("property_type",), id="no-type"),
    pytest.param({"property_type": "NUMBER"}, ("property_type",), id="unknown-type"),
    pytest.param({"property_type": "text"}, ("property_type",), id="lower-case-type"),
    pytest.param({"property_type": "RELATION"}, ("relation_type",), id="relation-no-target"),
    pytest.param({"property_type": "RELATION", "relation_type": "TEAM"}, ("relation_type",),
                 id="relation-bad-target"),
    pytest.param({"property_type": "TEXT", "relation_type": "USER"}, ("relation_type",),
                 id="relation-type-on-text"),
    pytest.param({"property_type": "OPTION", "relation_type": "ISSUE"}, ("relation_type",),
                 id="relation-type-on-option"),
    pytest.param({"property_type": "TEXT", "is_multi": True}, ("is_multi",),
                 id="multi-text"),
    pytest.param({"property_type": "DECIMAL", "is_multi": True}, ("is_multi",),
                 id="multi-decimal"),
    pytest.param({"property_type": "OPTION", "is_multi": "yes"}, ("is_multi",), id="non-bool-is-multi"),
    pytest.param({"property_type": "TEXT", "is_required": "yes"}, ("is_required",), id="non-bool-is-required"),
    pytest.param({"property_type": "TEXT", "is_active": 1}, ("is_active",), id="non-bool-is-active"),
    pytest.param({"property_type": "TEXT", "settings": ["a"]}, ("settings",), id="list-settings"),
    pytest.param({"property_type": "TEXT", "validation_rules": ["a"]}, ("validation_rules",), id="list-rules"),
    pytest.param({"property_type": "TEXT", "validation_rules": "x"}, ("validation_rules",), id="string-rules"),
    pytest.param({"property_type": "TEXT", "colour": "red"}, ("colour",), id="unknown-field"),
]

BAD_DEFAULTS = [
    pytest.param({"property_type": "OPTION", "default_value": "red"}, ("default_value",), id="option-default"),
    pytest.param({"property_type": "OPTION", "is_multi": True, "default_value": [U1]}, ("default_value",),
                 id="multi-option-default"),
    pytest.param({"property_type": "TEXT", "default_value": 5}, ("default_value",), id="text-number"),
    pytest.param({"property_type": "TEXT", "is_required": True, "default_value": "   "}, ("default_value",),
                 id="required-text-blank"),
    pytest.param({"property_type": "DECIMAL", "default_value": "5"}, ("default_value",), id="decimal-string"),
    pytest.param({"property_type": "DECIMAL", "default_value": True}, ("default_value",), id="decimal-bool"),
    pytest.param({"property_type": "BOOLEAN", "default_value": "true"}, ("default_value",), id="boolean-string"),
    pytest.param({"property_type": "BOOLEAN", "default_value": 0}, ("default_value",), id="boolean-zero"),
    pytest.param({"property_type": "URL", "default_value": "ftp://example.com"}, ("default_value",), id="url-ftp"),
    pytest.param({"property_type": "URL", "default_value": "example"}, ("default_value",), id="url-bare"),
    pytest.param({"property_type": "EMAIL", "default_value": "not-an-email"}, ("default_value",), id="email"),
    pytest.param({"property_type": "FILE", "default_value": "   "}, ("default_value",), id="file-blank"),
    pytest.param({"property_type": "DATETIME", "default_value": "yesterday"}, ("default_value",),
                 id="datetime-words"),
    pytest.param({"property_type": "DATETIME", "default_value": "2024-13-01T00:00:00"}, ("default_value",),
                 id="datetime-month-13"),
    pytest.param({"property_type": "RELATION", "relation_type": "USER", "default_value": 42}, ("default_value",),
                 id="relation-user-int"),
    pytest.param({"property_type": "RELATION", "relation_type": "ISSUE", "default_value": "nope"},
                 ("default_value",), id="relation-issue-not-uuid"),
    pytest.param({"property_type": "RELATION", "relation_type": "ISSUE", "default_value": [U1, U2]},
                 ("default_value",), id="single-relation-two"),
    pytest.param({"property_type": "RELATION", "relation_type": "USER", "is_multi": True, "default_value": []},
                 ("default_value",), id="multi-relation-empty"),
    # defaults that break the rules given with them
    pytest.param({"property_type": "DECIMAL", "validation_rules": {"max": 10}, "default_value": 11},
                 ("default_value",), id="decimal-above-max"),
    pytest.param({"property_type": "DECIMAL", "validation_rules": {"min": 0}, "default_value": -1},
                 ("default_value",), id="decimal-below-min"),
    pytest.param({"property_type": "TEXT", "validation_rules": {"max_length": 3}, "default_value": "hello"},
                 ("default_value",), id="text-too-long"),
    pytest.param({"property_type": "TEXT", "validation_rules": {"min_length": 3}, "default_value": "hi"},
                 ("default_value",), id="text-too-short"),
    pytest.param({"property_type": "TEXT", "validation_rules": {"regex": "[a-z]+"}, "default_value": "ABC"},
                 ("default_value",), id="text-regex"),
    pytest.param({"property_type": "EMAIL", "validation_rules": {"regex": ".*@acme\\.com"},
                  "default_value": "bob@example.com"}, ("default_value",), id="email-regex"),
    pytest.param({"property_type": "URL", "validation_rules": {"max_length": 10},
                  "default_value": "https://example.com"}, ("default_value",), id="url-too-long"),
    pytest.param({"property_type": "DATETIME", "validation_rules": {"min_date": "2024-01-01"},
                  "default_value": "2023-12-31T23:00:00"}, ("default_value",), id="datetime-before-min"),
    pytest.param({"property_type": "DATETIME", "validation_rules": {"max_date": "2024-01-31"},
                  "default_value": "2024-02-01T00:00:00"}, ("default_value",), id="datetime-after-max"),
    pytest.param({"property_type": "RELATION", "relation_type": "ISSUE", "is_multi": True,
                  "validation_rules": {"max_count": 1}, "default_value": [U1, U2]}, ("default_value",),
                 id="relation-over-max-count"),
]

BAD_RULES = [
    pytest.param("TEXT", {"min": 1}, id="text-min"),
    pytest.param("TEXT", {"max_count": 1}, id="text-max-count"),
    pytest.param("TEXT", {"bogus": 1}, id="text-unknown-rule"),
    pytest.param("URL", {"min_date": "2024-01-01"}, id="url-min-date"),
    pytest.param("EMAIL", {"max": 3}, id="email-max"),
    pytest.param("FILE", {"max_count": 3}, id="file-max-count"),
    pytest.param("DECIMAL", {"min_length": 1}, id="decimal-min-length"),
    pytest.param("DECIMAL", {"regex": "[0-9]+"}, id="decimal-regex"),
    pytest.param("BOOLEAN", {"min": 0}, id="boolean-min"),
    pytest.param("BOOLEAN", {"max_count": 1}, id="boolean-max-count"),
    pytest.param("DATETIME", {"max_length": 3}, id="datetime-max-length"),
    pytest.param("DATETIME", {"min": 0}, id="datetime-min"),
    pytest.param("OPTION", {"max_count": 2}, id="single-option-max-count"),
    pytest.param("OPTION", {"min": 1}, id="option-min"),
    pytest.param("USER", {"max_count": 2}, id="single-relation-max-count"),
    pytest.param("USER", {"regex": "x"}, id="relation-regex"),
    pytest.param("TEXT", {"regex": "("}, id="bad-regex"),
    pytest.param("TEXT", {"regex": "[a-"}, id="bad-regex-class"),
    pytest.param("TEXT", {"regex": ""}, id="empty-regex"),
    pytest.param("TEXT", {"regex": 5}, id="non-string-regex"),
    pytest.param("TEXT", {"regex": "a{1000000}"}, id="regex-repeated-a-million-times"),
    pytest.param("URL", {"regex": "(ab|cd){500}"}, id="regex-unrolling-too-far"),
    pytest.param("DECIMAL", {"min": 5, "max": 1}, id="min-above-max"),
    pytest.param("DECIMAL", {"min": "1"}, id="string-min"),
    pytest.param("DECIMAL", {"max": True}, id="bool-max"),
    pytest.param("TEXT", {"min_length": 5, "max_length": 2}, id="min-length-above-max-length"),
    pytest.param("TEXT", {"min_length": -1}, id="negative-min-length"),
    pytest.param("TEXT", {"max_length": 2.5}, id="fractional-max-length"),
    pytest.param("DATETIME", {"min_date": "2024-12-31", "max_date": "2024-01-01"}, id="min-date-after-max-date"),
    pytest.param("DATETIME", {"min_date": "2024/01/01"}, id="slashed-date"),
    pytest.param("DATETIME", {"max_date": "2024-02-30"}, id="impossible-date"),
    pytest.param("MULTI_OPTION", {"max_count": 0}, id="zero-max-count"),
    pytest.param("MULTI_ISSUE", {"max_count": "2"}, id="string-max-count"),
    pytest.param("MULTI_ISSUE", {"max_count": 1.5}, id="fractional-max-count"),
]

TYPES: dict[str, dict[str, Any]] = {
    "USER": {"property_type": "RELATION", "relation_type": "USER"},
    "MULTI_OPTION": {"property_type": "OPTION", "is_multi": True},
    "MULTI_ISSUE": {"property_type": "RELATION", "relation_type": "ISSUE", "is_multi": True},
}


def type_spec(name: str) -> dict[str, Any]:
    """A property type by short name: a Plane property_type, or USER / MULTI_OPTION / MULTI_ISSUE."""
    return dict(TYPES.get(name, {"property_type": name}))


@pytest.mark.parametrize(("spec", "fields"), [*BAD_PROPERTY_BODIES, *BAD_DEFAULTS])
async def test_bad_property_is_400_and_creates_nothing(stack: Stack, workspace: Workspace, spec: dict[str, Any],
                                                       fields: tuple[str, ...]) -> None:
    plane = await new_project(stack, workspace)
    if "display_name" not in fields:
        spec = {"display_name": "Prop", **spec}
    status, body, _ = await plane.request("POST", f"{plane.project}work-item-properties/", spec)
    assert status == 400, body
    assert_400(body, *fields)
    assert await get(plane, f"{plane.project}work-item-properties/") == []


@pytest.mark.parametrize(("kind", "rules"), BAD_RULES)
async def test_bad_rules_are_400_at_creation_and_on_patch(stack: Stack, workspace: Workspace, kind: str,
                                                          rules: Any) -> None:
    plane = await new_project(stack, workspace)
    properties = f"{plane.project}work-item-properties/"
    status, body, _ = await plane.request("POST", properties,
                                          {"display_name": "Prop", **type_spec(kind), "validation_rules": rules})
    assert status == 400, body
    assert_400(body, "validation_rules")
    assert await get(plane, properties) == []
    prop = await plane.create_property(**type_spec(kind))
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {"validation_rules": rules})
    assert status == 400, body
    assert_400(body, "validation_rules")
    assert await get(plane, plane.property_path(prop["id"])) == prop


@pytest.mark.parametrize(("created", "patch", "field"), [
    pytest.param({"property_type": "TEXT"}, {"property_type": "DECIMAL"}, "property_type", id="text-to-decimal"),
    pytest.param({"property_type": "TEXT"}, {"property_type": "OPTION"}, "property_type", id="text-to-option"),
    pytest.param(TYPES["USER"], {"property_type": "TEXT"}, "property_type", id="relation-to-text"),
    pytest.param(TYPES["USER"], {"relation_type": "ISSUE"}, "relation_type", id="user-to-issue"),
    pytest.param({"property_type": "TEXT"}, {"relation_type": "USER"}, "relation_type", id="text-gains-target"),
    pytest.param({"property_type": "OPTION"}, {"is_multi": True}, "is_multi", id="single-to-multi-option"),
    pytest.param(TYPES["MULTI_OPTION"], {"is_multi": False}, "is_multi", id="multi-to-single-option"),
    pytest.param(TYPES["MULTI_ISSUE"], {"is_multi": False}, "is_multi", id="multi-to-single-relation"),
    pytest.param(TYPES["USER"], {"is_multi": True}, "is_multi", id="single-to-multi-relation"),
    pytest.param({"property_type": "TEXT"}, {"is_multi": True}, "is_multi", id="text-gains-multi"),
])
async def test_patch_cannot_change_the_type(stack: Stack, workspace: Workspace, created: dict[str, Any],
                                            patch: dict[str, Any], field: str) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**created)
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {**patch, "display_name": "New"})
    assert status == 400, body
    assert_400(body, field)
    assert await get(plane, plane.property_path(prop["id"])) == prop


@pytest.mark.parametrize("created", [
    pytest.param({"property_type": "TEXT"}, id="text"),
    pytest.param({"property_type": "OPTION"}, id="option"),
    pytest.param(TYPES["MULTI_OPTION"], id="multi-option"),
    pytest.param(TYPES["USER"], id="relation-user"),
    pytest.param(TYPES["MULTI_ISSUE"], id="multi-relation-issue"),
])
async def test_patch_may_send_the_type_unchanged(stack: Stack, workspace: Workspace,
                                                 created: dict[str, Any]) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**created)
    same = {k: prop[k] for k in ("property_type", "relation_type", "is_multi")}
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {**same, "display_name": "New"})
    assert status == 200, body
    assert body["display_name"] == "New"
    assert {k: body[k] for k in same} == same


@pytest.mark.parametrize(("created", "patch", "fields"), [
    # defaults that do not fit the type or the existing rules
    pytest.param({"property_type": "DECIMAL"}, {"default_value": "x"}, ("default_value",), id="decimal-string"),
    pytest.param({"property_type": "BOOLEAN"}, {"default_value": 1}, ("default_value",), id="boolean-int"),
    pytest.param({"property_type": "EMAIL"}, {"default_value": "nope"}, ("default_value",), id="bad-email"),
    pytest.param({"property_type": "DATETIME"}, {"default_value": "soon"}, ("default_value",), id="bad-datetime"),
    pytest.param({"property_type": "OPTION"}, {"default_value": U1}, ("default_value",), id="option-default"),
    pytest.param({"property_type": "DECIMAL", "validation_rules": {"max": 10}}, {"default_value": 11},
                 ("default_value",), id="default-above-existing-max"),
    pytest.param({"property_type": "TEXT", "validation_rules": {"regex": "[a-z]+"}}, {"default_value": "ABC"},
                 ("default_value",), id="default-against-existing-regex"),
    pytest.param({"property_type": "TEXT", "is_required": True}, {"default_value": "  "}, ("default_value",),
                 id="blank-default-of-required"),
    # rules (or required) that the existing default would break
    pytest.param({"property_type": "DECIMAL", "default_value": 5}, {"validation_rules": {"min": 6}},
                 ("default_value", "validation_rules"), id="min-above-default"),
    pytest.param({"property_type": "DECIMAL", "default_value": 5}, {"validation_rules": {"max": 4.5}},
                 ("default_value", "validation_rules"), id="max-below-default"),
    pytest.param({"property_type": "TEXT", "default_value": "hello"}, {"validation_rules": {"max_length": 3}},
                 ("default_value", "validation_rules"), id="max-length-below-default"),
    pytest.param({"property_type": "TEXT", "default_value": "abc"}, {"validation_rules": {"regex": "[0-9]+"}},
                 ("default_value", "validation_rules"), id="regex-against-default"),
    pytest.param({"property_type": "URL", "default_value": "https://example.com"},
                 {"validation_rules": {"min_length": 50}}, ("default_value", "validation_rules"),
                 id="min-length-above-default"),
    pytest.param({"property_type": "DATETIME", "default_value": "2024-06-01T10:00:00"},
                 {"validation_rules": {"max_date": "2024-01-01"}}, ("default_value", "validation_rules"),
                 id="max-date-before-default"),
    pytest.param({"property_type": "DATETIME", "default_value": "2024-06-01T10:00:00"},
                 {"validation_rules": {"min_date": "2024-06-02"}}, ("default_value", "validation_rules"),
                 id="min-date-after-default"),
    pytest.param({**TYPES["MULTI_ISSUE"], "default_value": [U1, U2, U3]}, {"validation_rules": {"max_count": 2}},
                 ("default_value", "validation_rules"), id="max-count-below-default"),
    pytest.param({"property_type": "TEXT", "default_value": ""}, {"is_required": True},
                 ("default_value", "is_required"), id="required-with-blank-default"),
    # malformed bodies
    pytest.param({"property_type": "TEXT"}, {"display_name": ""}, ("display_name",), id="empty-display-name"),
    pytest.param({"property_type": "TEXT"}, {"is_active": "no"}, ("is_active",), id="non-bool-is-active"),
    pytest.param({"property_type": "TEXT"}, {"is_required": 1}, ("is_required",), id="non-bool-is-required"),
    pytest.param({"property_type": "TEXT"}, {"settings": "x"}, ("settings",), id="string-settings"),
    pytest.param({"property_type": "TEXT"}, {"validation_rules": [1]}, ("validation_rules",), id="list-rules"),
    pytest.param({"property_type": "TEXT"}, {"property_type": "NUMBER"}, ("property_type",), id="unknown-type"),
    pytest.param({"property_type": "TEXT"}, {"project": a_uuid()}, ("project",), id="project-not-patchable"),
])
async def test_bad_property_patch_is_400_and_changes_nothing(stack: Stack, workspace: Workspace,
                                                             created: dict[str, Any], patch: dict[str, Any],
                                                             fields: tuple[str, ...]) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**created)
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), patch)
    assert status == 400, body
    assert_400(body, *fields)
    assert await get(plane, plane.property_path(prop["id"])) == prop


@pytest.mark.parametrize(("created", "patch"), [
    pytest.param({"property_type": "DECIMAL", "default_value": 5}, {"validation_rules": {"min": 10},
                                                                     "default_value": 12}, id="rules-and-default"),
    pytest.param({"property_type": "DECIMAL", "default_value": 5}, {"validation_rules": {"min": 10},
                                                                     "default_value": None}, id="rules-drop-default"),
    pytest.param({"property_type": "DECIMAL", "validation_rules": {"max": 10}},
                 {"validation_rules": {}, "default_value": 100}, id="drop-rules-then-larger-default"),
    pytest.param({"property_type": "TEXT", "default_value": "hello"},
                 {"validation_rules": {"min_length": 2, "max_length": 5, "regex": "[a-z]+"}}, id="text-rules-fit"),
    pytest.param({"property_type": "DATETIME", "default_value": "2024-06-01T10:00:00"},
                 {"validation_rules": {"min_date": "2024-06-01", "max_date": "2024-06-01"}}, id="date-rules-fit"),
    pytest.param({**TYPES["MULTI_ISSUE"], "default_value": [U1, U2]}, {"validation_rules": {"max_count": 2}},
                 id="max-count-fits"),
    pytest.param(TYPES["MULTI_OPTION"], {"validation_rules": {"max_count": 1}}, id="option-max-count"),
    pytest.param({"property_type": "BOOLEAN"}, {"default_value": True, "is_required": True}, id="boolean-default"),
    pytest.param({"property_type": "TEXT", "default_value": "x"}, {"default_value": None}, id="clear-default"),
])
async def test_good_property_patch_is_200_and_kept(stack: Stack, workspace: Workspace, created: dict[str, Any],
                                                   patch: dict[str, Any]) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**created)
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), patch)
    assert status == 200, body
    for key, value in patch.items():
        assert body[key] == value, (key, body)
    assert await get(plane, plane.property_path(prop["id"])) == body


async def test_patched_rules_apply_to_value_writes(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="DECIMAL")
    status, body, _ = await plane.write(prop, 50)
    assert status == 201, body
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]),
                                          {"validation_rules": {"min": 0, "max": 10}})
    assert status == 200, body
    status, body, _ = await plane.write(prop, 11)
    assert status == 400, body
    assert_400(body, "value")
    status, body, _ = await plane.write(prop, 10)
    assert status == 200 and body["value"] == 10, body


async def test_deleting_a_property_makes_its_values_404(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    gone = await plane.create_property(property_type="TEXT", display_name="Gone")
    kept = await plane.create_property(property_type="TEXT", display_name="Kept")
    for prop in (gone, kept):
        status, body, _ = await plane.write(prop, "hello")
        assert status == 201, body
    status, _, _ = await plane.request("DELETE", plane.property_path(gone["id"]))
    assert status == 204
    values = plane.values_path(WORK_ITEM, gone["id"])
    for method, path, json in (("POST", values, {"value": "again"}), ("PATCH", values, {"value": "again"}),
                               ("GET", values, None), ("DELETE", values, None),
                               ("POST", plane.values_path(a_uuid(), gone["id"]), {"value": "new item"}),
                               ("GET", plane.property_path(gone["id"]) + "options/", None)):
        status, body, _ = await plane.request(method, path, json)
        assert status == 404, (method, path, body)
        assert_404(body)
    listed = await get(plane, plane.all_values_path(WORK_ITEM))
    assert [v["property_id"] for v in listed] == [kept["id"]]
    status, body, _ = await plane.write(kept, "still")
    assert status == 200 and body["value"] == "still", body


# --- options ------------------------------------------------------------------------------------------


async def test_option_crud(stack: Stack, workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", display_name="Colour")
    options = plane.property_path(prop["id"]) + "options/"
    status, red, _ = await plane.request("POST", options, {"name": "red", "description": "warm",
                                                           "external_id": "o-1", "external_source": "jira"})
    assert status == 201, red
    assert is_uuid(red["id"])
    assert {k: red[k] for k in ("name", "description", "sort_order", "is_default", "is_active", "property",
                                "external_id", "external_source")} == {
        "name": "red", "description": "warm", "sort_order": 0, "is_default": False, "is_active": True,
        "property": prop["id"], "external_id": "o-1", "external_source": "jira"}
    blue = await plane.create_option(prop, "blue")
    assert blue["sort_order"] == 1 and blue["description"] == "" and blue["external_id"] is None
    assert await get(plane, options) == [red, blue]
    assert await get(plane, f"{options}{red['id']}/") == red

    status, patched, _ = await plane.request("PATCH", f"{options}{red['id']}/", {
        "name": "crimson", "description": "", "is_active": False, "external_id": "o-2", "external_source": "x"})
    assert status == 200, patched
    assert patched == {**red, "name": "crimson", "description": "", "is_active": False, "external_id": "o-2",
                       "external_source": "x", "updated_at": patched["updated_at"]}
    assert moment(patched["updated_at"]) > moment(red["updated_at"])
    assert await get(plane, f"{options}{red['id']}/") == patched

    status, body, _ = await plane.write(prop, blue["id"])
    assert status == 201, body
    # An option a value holds is not deleted (409); once no value holds it, it is.
    status, body, _ = await plane.request("DELETE", f"{options}{blue['id']}/")
    assert status == 409 and set(body) == {"error"}, body
    status, body, _ = await plane.request("DELETE", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 204, body
    status, body, _ = await plane.request("DELETE", f"{options}{blue['id']}/")
    assert status == 204 and body is None
    for method, json in (("GET", None), ("PATCH", {"name": "again"}), ("DELETE", None)):
        status, body, _ = await plane.request(method, f"{options}{blue['id']}/", json)
        assert status == 404, (method, body)
        assert_404(body)
    assert await get(plane, options) == [patched]
    # A deleted option can no longer be chosen.
    status, body, _ = await plane.write(prop, blue["id"], work_item=a_uuid())
    assert status == 400, body
    assert_400(body, "value")


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
async def test_defaults_of_options(stack: Stack, workspace: Workspace, multi: bool) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", is_multi=multi)
    options = plane.property_path(prop["id"]) + "options/"

    async def defaults() -> list[str]:
        return [o["name"] for o in await get(plane, options) if o["is_default"]]

    a = await plane.create_option(prop, "a", is_default=True)
    assert a["is_default"] is True
    b = await plane.create_option(prop, "b", is_default=True)
    assert b["is_default"] is True
    await plane.create_option(prop, "c")
    assert await defaults() == (["a", "b"] if multi else ["b"])
    status, body, _ = await plane.request("PATCH", f"{options}{a['id']}/", {"is_default": True})
    assert status == 200 and body["is_default"] is True, body
    assert await defaults() == (["a", "b"] if multi else ["a"])
    status, body, _ = await plane.request("PATCH", f"{options}{a['id']}/", {"is_default": False})
    assert status == 200 and body["is_default"] is False, body
    assert await defaults() == (["b"] if multi else [])


@pytest.mark.parametrize("spec", [
    pytest.param({"property_type": "TEXT"}, id="text"),
    pytest.param({"property_type": "DECIMAL"}, id="decimal"),
    pytest.param({"property_type": "BOOLEAN"}, id="boolean"),
    pytest.param({"property_type": "DATETIME"}, id="datetime"),
    pytest.param({"property_type": "URL"}, id="url"),
    pytest.param({"property_type": "EMAIL"}, id="email"),
    pytest.param({"property_type": "FILE"}, id="file"),
    pytest.param(TYPES["USER"], id="relation"),
    pytest.param(TYPES["MULTI_ISSUE"], id="multi-relation"),
])
async def test_options_only_on_option_properties(stack: Stack, workspace: Workspace, spec: dict[str, Any],
                                                 db: Any) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(**spec)
    status, body, _ = await plane.request("POST", plane.property_path(prop["id"]) + "options/", {"name": "red"})
    assert status == 400, body
    assert_400(body, "property_id", "non_field_errors", "property")
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices") == 0


@pytest.mark.parametrize(("method", "spec", "fields"), [
    pytest.param("POST", {}, ("name",), id="post-no-name"),
    pytest.param("POST", {"name": ""}, ("name",), id="post-empty-name"),
    pytest.param("POST", {"name": "  "}, ("name",), id="post-blank-name"),
    pytest.param("POST", {"name": "x" * 256}, ("name",), id="post-long-name"),
    pytest.param("POST", {"name": 5}, ("name",), id="post-number-name"),
    pytest.param("POST", {"name": "red", "is_default": "yes"}, ("is_default",), id="post-non-bool-default"),
    pytest.param("POST", {"name": "red", "is_active": None}, ("is_active",), id="post-null-is-active"),
    pytest.param("POST", {"name": "red", "colour": "#f00"}, ("colour",), id="post-unknown-field"),
    pytest.param("PATCH", {"name": ""}, ("name",), id="patch-empty-name"),
    pytest.param("PATCH", {"is_default": 1}, ("is_default",), id="patch-non-bool-default"),
    pytest.param("PATCH", {"is_active": "no"}, ("is_active",), id="patch-non-bool-is-active"),
    pytest.param("PATCH", {"sort_order": 3}, ("sort_order",), id="patch-unknown-field"),
])
async def test_bad_option_is_400_and_changes_nothing(stack: Stack, workspace: Workspace, method: str,
                                                     spec: dict[str, Any], fields: tuple[str, ...]) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION")
    existing = await plane.create_option(prop, "blue")
    options = plane.property_path(prop["id"]) + "options/"
    path = options if method == "POST" else f"{options}{existing['id']}/"
    status, body, _ = await plane.request(method, path, spec)
    assert status == 400, body
    assert_400(body, *fields)
    assert await get(plane, options) == [existing]


# --- 404s, tenants and keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """What a request names: a workspace slug, project, (OPTION) property and option, and a value to write."""

    slug: str
    project: str
    prop: str
    option: str
    work_item: str = WORK_ITEM


def endpoints(ids: Ids) -> list[tuple[str, str, Any]]:
    """Every definition and value endpoint naming ``ids``, with a valid body; deletes last, deepest first."""
    projects = f"{API}/{ids.slug}/projects/"
    project = f"{projects}{ids.project}/"
    properties = f"{project}work-item-properties/"
    prop = f"{properties}{ids.prop}/"
    options = f"{prop}options/"
    option = f"{options}{ids.option}/"
    values = f"{project}work-items/{ids.work_item}/work-item-properties/{ids.prop}/values/"
    all_values = f"{project}work-items/{ids.work_item}/work-item-properties/values/"
    return [
        ("GET", projects, None), ("POST", projects, {"name": "Intruder", "identifier": "INTRUDER"}),
        ("GET", project, None), ("PATCH", project, {"name": "Renamed"}),
        ("GET", properties, None), ("POST", properties, {"display_name": "Intruder", "property_type": "TEXT"}),
        ("GET", prop, None), ("PATCH", prop, {"display_name": "Renamed"}),
        ("GET", options, None), ("POST", options, {"name": "intruder"}),
        ("GET", option, None), ("PATCH", option, {"name": "renamed"}),
        ("GET", all_values, None), ("GET", values, None),
        ("POST", values, {"value": ids.option}), ("PATCH", values, {"value": ids.option}),
        ("DELETE", option, None), ("DELETE", values, None), ("DELETE", prop, None), ("DELETE", project, None),
    ]


@dataclass
class Tenant:
    """A workspace with one project, an OPTION property, an option, and a value of a work item."""

    workspace: Workspace
    plane: Plane
    prop: dict[str, Any]
    option: dict[str, Any]

    @property
    def ids(self) -> Ids:
        return Ids(self.workspace.slug, self.plane.project_id, self.prop["id"], self.option["id"])

    async def snapshot(self) -> list[Any]:
        """Everything of the tenant, as its own key sees it."""
        plane = self.plane
        options = plane.property_path(self.prop["id"]) + "options/"
        return [await get(plane, projects_path(self.workspace)), await get(plane, plane.project),
                await get(plane, f"{plane.project}work-item-properties/"),
                await get(plane, plane.property_path(self.prop["id"])), await get(plane, options),
                await get(plane, f"{options}{self.option['id']}/"),
                await get(plane, plane.values_path(WORK_ITEM, self.prop["id"])),
                await get(plane, plane.all_values_path(WORK_ITEM))]


async def tenant(stack: Stack, workspace: Workspace) -> Tenant:
    plane = await new_project(stack, workspace, "WEB")
    prop = await plane.create_property(property_type="OPTION", display_name="Colour")
    option = await plane.create_option(prop, "red")
    await plane.create_option(prop, "blue")
    status, body, _ = await plane.write(prop, option["id"])
    assert status == 201, body
    return Tenant(workspace, plane, prop, option)


@pytest.mark.parametrize("wrong", [
    pytest.param({"slug": "nosuch"}, id="unknown-slug"),
    pytest.param({"project": "not-a-uuid"}, id="malformed-project"),
    pytest.param({"project": "12345"}, id="numeric-project"),
    pytest.param({"project": "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e1"}, id="short-project"),
    pytest.param({"project": a_uuid()}, id="unknown-project"),
    pytest.param({"prop": "not-a-uuid"}, id="malformed-property"),
    pytest.param({"prop": a_uuid()}, id="unknown-property"),
    pytest.param({"option": "7"}, id="malformed-option"),
    pytest.param({"option": a_uuid()}, id="unknown-option"),
    pytest.param({"work_item": "not-a-uuid"}, id="malformed-work-item"),
])
async def test_unknown_or_malformed_ids_are_404_everywhere(stack: Stack, workspace: Workspace,
                                                           wrong: dict[str, str]) -> None:
    ours = await tenant(stack, workspace)
    before = await ours.snapshot()
    [(name, bogus)] = wrong.items()
    ids = replace(ours.ids, **wrong)
    named = [(m, p, j) for m, p, j in endpoints(ids) if f"/{bogus}/" in p]
    assert named
    for method, path, json in named:
        status, body, _ = await stack.request(method, path, workspace, json=json)
        assert status == 404, (name, method, path, body)
        assert_404(body)
    assert await ours.snapshot() == before


CROSS_TENANT = {
    # (whose key, which ids: ours with some of theirs; the part that must be refused)
    "their-slug-and-ids": ("ours", ("slug", "project", "prop", "option"), "slug"),
    "their-slug-our-ids": ("ours", ("slug",), "slug"),
    "our-slug-their-project": ("ours", ("project", "prop", "option"), "project"),
    "our-project-their-property": ("ours", ("prop", "option"), "prop"),
    "our-property-their-option": ("ours", ("option",), "option"),
    "their-key-our-slug-and-ids": ("theirs", (), "slug"),
}


@pytest.mark.parametrize("case", list(CROSS_TENANT))
async def test_another_workspaces_objects_are_404_everywhere(stack: Stack, workspace: Workspace,
                                                             other_workspace: Workspace, case: str) -> None:
    ours, theirs = await tenant(stack, workspace), await tenant(stack, other_workspace)
    before = (await ours.snapshot(), await theirs.snapshot())
    key_of, borrowed, refused = CROSS_TENANT[case]
    caller, victim = (workspace, theirs) if key_of == "ours" else (other_workspace, ours)
    own = ours if key_of == "ours" else theirs
    ids = replace(own.ids, **{part: getattr(victim.ids, part) for part in borrowed}) if borrowed else victim.ids
    marker = getattr(ids, refused)
    named = [(m, p, j) for m, p, j in endpoints(ids) if f"/{marker}/" in p]
    assert named
    for method, path, json in named:
        status, body, _ = await stack.request(method, path, caller, json=json)
        assert status == 404, (case, method, path, body)
        assert_404(body)
    assert (await ours.snapshot(), await theirs.snapshot()) == before


@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-key"),
    pytest.param({"X-API-Key": "cfv_00000000_wrong"}, id="wrong-key"),
    pytest.param({"X-API-Key": "   "}, id="blank-key"),
    pytest.param({"Authorization": "Bearer cfv_00000000_wrong"}, id="wrong-bearer"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
])
async def test_requests_without_a_valid_key_are_401(stack: Stack, workspace: Workspace,
                                                    other_workspace: Workspace, headers: dict[str, str]) -> None:
    ours = await tenant(stack, workspace)
    before = await ours.snapshot()
    for ids in (ours.ids, replace(ours.ids, slug="nosuch"), replace(ours.ids, project="not-a-uuid"),
                replace(ours.ids, slug=other_workspace.slug)):
        for method, path, json in endpoints(ids):
            status, body, response_headers = await stack.request(method, path, None, json=json, headers=headers)
            assert status == 401, (method, path, body)
            assert response_headers["Content-Type"].startswith("application/json")
            assert_401(body)
            assert workspace.key not in body["detail"]
    assert await ours.snapshot() == before
    # The right key in either header is let in.
    for good in ({"X-API-Key": workspace.key}, {"Authorization": f"Bearer {workspace.key}"}):
        status, body, _ = await stack.request("GET", ours.plane.project, None, headers=good)
        assert status == 200 and body["id"] == ours.plane.project_id, body


async def test_a_user_relation_default_names_an_active_user_of_the_workspace(
        stack: Stack, workspace: Workspace, other_workspace: Workspace, db: Any) -> None:
    """Issue 13, bug 2, for defaults: checked as a write's value would be, when the default is set."""
    plane = await new_project(stack, workspace)
    stranger = str(uuid.uuid4())
    await add_users(db, other_workspace.id, uuids=[stranger])
    for default in (stranger, str(uuid.uuid4())):
        status, body, _ = await plane.request("POST", f"{plane.project}work-item-properties/", {
            "display_name": "Owner", "property_type": "RELATION", "relation_type": "USER", "default_value": default})
        assert status == 400 and default in str(body["default_value"]), body
    await add_users(db, workspace.id, uuids=[U2])
    prop = await plane.create_property(property_type="RELATION", relation_type="USER", display_name="Lead")
    await db.execute("UPDATE users SET deactivated_at = now() WHERE uuid = $1", uuid.UUID(U2))
    status, body, _ = await plane.request("PATCH", plane.property_path(prop["id"]), {"default_value": U2})
    assert status == 400 and "deactivated" in str(body["default_value"]), body
    kantata = await stack.request("POST", "/api/v1/custom_fields", workspace, json={"custom_field": {
        "name": "Reviewer", "subject_type": "Story", "value_type": "relation", "relation_target": "user",
        "default_value": 999999}})
    assert kantata[0] == 400 and "999999" in str(kantata[1]), kantata
