"""A write's answer shows no more than the writer may read (issue 5)."""

from __future__ import annotations

from typing import Any

import asyncpg
from cfv.store.accounts import issue_key
from cfv.store.queries import query
from support import Stack, Workspace
from support.kantata import VALUES, values_of


async def collaborator(db: asyncpg.Connection[Any], workspace: Workspace, project: str) -> Workspace:
    """A person with project_collaboration on ``project``, as a client."""
    user = await db.fetchrow(query("create_user"), workspace.id, "person", "Col", "col@example.com",
                             "account_collaboration")
    assert user is not None
    await db.fetchrow(query("set_membership"), workspace.id, user["id"], project, "project_collaboration")
    return Workspace(workspace.id, workspace.slug, (await issue_key(db, workspace.id, user_id=user["id"])).secret)


async def test_a_writer_who_may_not_read_gets_the_value_hidden(stack: Stack, workspace: Workspace,
                                                               db: asyncpg.Connection[Any]) -> None:
    field = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                     choices=["red", "green", "blue"], write_access="project_collaboration",
                                     read_access="project_admin")
    red, green, blue = (int(c["id"]) for c in field["choices"])
    status, body, _ = await stack.request("PUT", "/api/v1/subject_projects", workspace, json={
        "subject_projects": [{"subject_type": "Story", "subject_id": 7, "project": 12}]})
    assert status == 200, body
    status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": {
        "subject_type": "Story", "subject_id": 7, "custom_field_id": int(field["id"]), "value": [red, green]}})
    assert status == 200, body
    col = await collaborator(db, workspace, "12")
    # Adding to the set would answer the whole set, which the writer may not read: the value is hidden.
    status, body, _ = await stack.request("POST", VALUES, col, json={"custom_field_value": {
        "subject_type": "Story", "subject_id": 7, "custom_field_id": int(field["id"]), "value": {"add": [blue]}}})
    assert status == 200, body
    [value] = values_of(body)
    assert value["hidden"] is True and value["value"] is None
    status, body, _ = await stack.request("GET", f"/api/v1/operations/{value['operation_id']}", col)
    assert status == 200 and body["result"]["custom_field_values"] == {}, body
    # The administrator sees it all.
    status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Story", workspace)
    [stored] = values_of(body)
    assert sorted(stored["value"]) == sorted([red, green, blue]) and "hidden" not in stored


async def test_a_unique_clash_does_not_name_the_subject_holding_the_value(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    field = await stack.create_field(workspace, name="Code", subject_type="Story", value_type="string",
                                     unique_constraint=True, write_access="project_collaboration")
    status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": {
        "subject_type": "Story", "subject_id": 99, "custom_field_id": int(field["id"]), "value": "secret-code"}})
    assert status == 200, body
    status, body, _ = await stack.request("PUT", "/api/v1/subject_projects", workspace, json={
        "subject_projects": [{"subject_type": "Story", "subject_id": 7, "project": 12}]})
    assert status == 200, body
    col = await collaborator(db, workspace, "12")
    status, body, _ = await stack.request("POST", VALUES, col, json={"custom_field_value": {
        "subject_type": "Story", "subject_id": 7, "custom_field_id": int(field["id"]), "value": "secret-code"}})
    assert status == 422 and body["errors"][0]["type"] == "conflict", body
    assert "99" not in body["errors"][0]["message"]
