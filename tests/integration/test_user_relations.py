"""A user relation names users of the workspace (issue 13, bug 2): Kantata fields by id (422 otherwise), work-item
properties by UUID (400 otherwise), the bad ids named and nothing of the request applied. A deactivated user stays
in the values that name them and may be kept there, but is never added. Work-item relations stay free."""

from __future__ import annotations

from typing import Any

import asyncpg
from support import Stack, Workspace
from support.kantata import item, values_of, write
from support.plane import a_uuid, new_project

USERS = "/api/v1/users"


async def _user(stack: Stack, workspace: Workspace, name: str) -> dict[str, Any]:
    status, body, _ = await stack.request("POST", USERS, workspace, json={"user": {
        "name": name, "email": f"{name.lower()}@example.com", "account_role": "account_collaboration"}})
    assert status == 201, body
    user: dict[str, Any] = next(iter(body["users"].values()))
    return user


async def _values(db: asyncpg.Connection[Any], field_id: int) -> dict[str, Any]:
    rows = await db.fetch("SELECT subject_id, value FROM current_values WHERE custom_field_id = $1", field_id)
    return {r["subject_id"]: r["value"] for r in rows}


async def test_a_kantata_user_relation_takes_only_users_of_the_workspace(
        stack: Stack, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    owner = await stack.create_field(workspace, name="Owner", subject_type="Story", value_type="relation",
                                     relation_target="user")
    helpers = await stack.create_field(workspace, name="Helpers", subject_type="Story", value_type="relation",
                                       relation_target="user", relation_multi=True)
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    ada, bob = int((await _user(stack, workspace, "Ada"))["id"]), int((await _user(stack, workspace, "Bob"))["id"])
    stranger = int((await _user(stack, other_workspace, "Eve"))["id"])

    status, body, _ = await write(stack, workspace, item(points, 3, subject_id=1), item(owner, 999999, subject_id=1),
                                  item(helpers, [ada, stranger, 888888], subject_id=1))
    assert status == 422, body
    assert [(e["type"], e["field"], e["index"]) for e in body["errors"]] == [("validation", "value", 1),
                                                                            ("validation", "value", 2)]
    assert body["errors"][0]["message"] == "Owner: no such user in this workspace: 999999"
    assert body["errors"][1]["message"] == f"Helpers: no such user in this workspace: {stranger}, 888888"
    assert await _values(db, int(points["id"])) == {}  # all or nothing: the valid item was not applied either

    status, body, _ = await write(stack, workspace, item(owner, ada, subject_id=1),
                                  item(helpers, [bob, ada], subject_id=1))
    assert status == 200, body
    assert [v["value"] for v in values_of(body)] == [[ada], [bob, ada]]


async def test_a_plane_user_relation_takes_the_uuids_of_users_of_the_workspace(
        stack: Stack, workspace: Workspace, other_workspace: Workspace) -> None:
    plane = await new_project(stack, workspace)
    assignee = await plane.create_property(property_type="RELATION", relation_type="USER", display_name="Assignee")
    watchers = await plane.create_property(property_type="RELATION", relation_type="USER", is_multi=True,
                                           display_name="Watchers")
    blocks = await plane.create_property(property_type="RELATION", relation_type="ISSUE", is_multi=True,
                                         display_name="Blocks")
    ada = (await _user(stack, workspace, "Ada"))["uuid"]
    eve = (await _user(stack, other_workspace, "Eve"))["uuid"]
    nobody = a_uuid()

    status, body, _ = await plane.write(assignee, nobody)
    assert status == 400, body
    assert nobody in str(body), body
    status, body, _ = await plane.write(watchers, [ada, eve])
    assert status == 400, body
    assert eve in str(body) and ada not in str(body), body  # only the unknown one is named

    status, body, _ = await plane.write(assignee, ada)
    assert status == 201, body
    assert body["value"] == ada
    status, body, _ = await plane.write(watchers, [ada])
    assert status == 201, body
    status, body, _ = await plane.write(blocks, [a_uuid(), a_uuid()])  # work items are not cfv's: any UUID
    assert status == 201, body


async def test_a_deactivated_user_stays_where_named_but_is_never_added(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    helpers = await stack.create_field(workspace, name="Helpers", subject_type="Story", value_type="relation",
                                       relation_target="user", relation_multi=True)
    ada, bob = int((await _user(stack, workspace, "Ada"))["id"]), int((await _user(stack, workspace, "Bob"))["id"])
    status, body, _ = await write(stack, workspace, item(helpers, [ada, bob], subject_id=1))
    assert status == 200, body
    status, body, _ = await stack.request("DELETE", f"{USERS}/{bob}", workspace)
    assert status == 204, body

    assert await _values(db, int(helpers["id"])) == {"1": [ada, bob]}  # the value naming Bob is left as it is
    status, body, _ = await stack.request("GET", f"/api/v1/custom_field_values?subject_type=Story&subject_id=1"
                                                 f"&custom_field_id={helpers['id']}", workspace)
    assert status == 200 and [v["value"] for v in body["custom_field_values"].values()] == [[ada, bob]], body

    status, body, _ = await write(stack, workspace, item(helpers, [bob], subject_id=2))
    assert status == 422, body
    assert body["errors"][0]["message"].startswith(f"Helpers: deactivated user(s) {bob} cannot be added"), body
    status, body, _ = await write(stack, workspace, item(helpers, [bob, ada], subject_id=1))  # kept, reordered
    assert status == 200, body
    assert await _values(db, int(helpers["id"])) == {"1": [bob, ada]}
