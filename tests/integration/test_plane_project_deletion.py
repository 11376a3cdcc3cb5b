"""Deleting a Plane project does what deleting each of its properties does (issue 13, bug 1): through the
workers, in one transaction under the workspace's lock, every value of every property deleted and announced as
``cfv.value.deleted.v1``, the properties and the project marked deleted. Before, SQL soft-deleted the
properties and left their values current and unannounced."""

from __future__ import annotations

from typing import Any

import asyncpg
from support import EventCollector, Stack, Workspace
from support.plane import WORK_ITEM, a_uuid, new_project
from test_admin_api import user_with_key

DELETED = "cfv.value.deleted.v1"


async def test_deleting_a_project_deletes_and_announces_every_value_of_its_properties(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector) -> None:
    plane = await new_project(stack, workspace, "WEB")
    other = await new_project(stack, workspace, "APP")
    text = await plane.create_property(property_type="TEXT")
    colour = await plane.create_property(property_type="OPTION", is_multi=True)
    red, blue = await plane.create_option(colour, "red"), await plane.create_option(colour, "blue")
    await plane.create_property(property_type="DECIMAL")  # no value: deleted, nothing to announce
    kept = await other.create_property(property_type="TEXT")
    second_item = a_uuid()
    for status, body, _ in [await plane.write(text, "hello"), await plane.write(text, "again", second_item),
                            await plane.write(colour, [red["id"], blue["id"]]),
                            await other.write(kept, "stays")]:
        assert status == 201, body
    await events.wait_for_count(4)

    status, body, _ = await plane.request("DELETE", plane.project)
    assert status == 204, body

    rows = await db.fetch("SELECT f.id, f.deleted_at IS NOT NULL AS deleted, "
                          "(SELECT count(*) FROM current_values v WHERE v.custom_field_id = f.id "
                          "AND v.value IS NOT NULL) AS current "
                          "FROM custom_fields f JOIN projects p ON (p.workspace_id, p.id) = (f.workspace_id, "
                          "f.project_id) WHERE p.identifier IN ('WEB', 'APP') ORDER BY p.identifier, f.id")
    by_project = {r["id"]: (r["deleted"], r["current"]) for r in rows}
    assert sorted(by_project.values()) == [(False, 1), (True, 0), (True, 0), (True, 0)], by_project
    assert await db.fetchval("SELECT deleted_at IS NOT NULL FROM projects WHERE id = $1::uuid", plane.project_id)
    assert not await db.fetchval("SELECT deleted_at IS NOT NULL FROM projects WHERE id = $1::uuid", other.project_id)

    received = await events.wait_for_count(4 + 3)  # hello, again, and the multi value: one event each
    deletes = [e for e in received if e["type"] == DELETED]
    assert len(deletes) == 3, deletes
    # Events name fields by their internal ids: the three values of the two properties that had some.
    values = sorted((e["data"]["subject_id"], str(e["data"]["before"]["value"])) for e in deletes)
    multi = [e["data"]["before"]["value"] for e in deletes if isinstance(e["data"]["before"]["value"], list)]
    assert [v for v in values if not v[1].startswith("[")] == sorted([(WORK_ITEM, "hello"), (second_item, "again")])
    assert len(multi) == 1 and len(multi[0]) == 2  # both options (named by their choice ids)
    assert len({e["data"]["custom_field_id"] for e in deletes}) == 2
    assert {e["data"]["custom_field_id"] for e in deletes} <= {i for i, (deleted, _) in by_project.items() if deleted}
    assert all(e["data"]["after"] is None for e in deletes)

    # Gone, once: deleting it again is 404, and the other project's value is still there.
    status, body, _ = await plane.request("DELETE", plane.project)
    assert status == 404, body
    status, body, _ = await other.request("GET", other.values_path(WORK_ITEM, kept["id"]))
    assert status == 200, body


async def test_deleting_a_project_takes_an_account_administrator(stack: Stack, workspace: Workspace,
                                                               db: asyncpg.Connection[Any]) -> None:
    plane = await new_project(stack, workspace, "WEB")
    await plane.create_property(property_type="TEXT")
    # A member's key: the gateway refuses it before any command is sent (the worker would too).
    _, member = await user_with_key(stack, workspace, "project_lead", "pat@example.com")
    status, body, _ = await stack.request("DELETE", plane.project, member)
    assert status == 403, body
    assert not await db.fetchval("SELECT deleted_at IS NOT NULL FROM projects WHERE id = $1::uuid", plane.project_id)
