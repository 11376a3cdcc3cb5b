"""A definition change reads what it builds on again under the workspace's lock: a field or project the workers
deleted after the face read it (its deletion goes through the queue) gets no new choice, option change or
property, and nothing is announced after its deletion event."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from cfv.gateway import definitions as core
from cfv.gateway.errors import ApiError
from cfv.store.database import create_pool
from support import Stack, Workspace


async def test_a_field_deleted_meanwhile_gets_no_choice_and_no_choice_change(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    status, body, _ = await stack.request("POST", "/api/v1/custom_fields", workspace, json={"custom_field": {
        "name": "Colour", "subject_type": "Story", "value_type": "single", "choices": ["red"]}})
    assert status == 201, body
    [field] = body["custom_fields"].values()
    stale = await db.fetchrow("SELECT * FROM custom_fields WHERE id = $1", int(field["id"]))  # what the face read
    red = int(field["choices"][0]["id"])
    status, body, _ = await stack.request("DELETE", f"/api/v1/custom_fields/{field['id']}", workspace)
    assert status == 204, body
    by = core.By(workspace.id, workspace.slug, "key:1")
    pool = await create_pool(stack.settings.database_url, size=2)
    try:
        with pytest.raises(ApiError) as added:
            await core.define_choice(pool, by, field=stale, spec=core.ChoiceSpec(label="late"))
        assert (added.value.status, added.value.errors[0]["message"]) == (404, "custom field not found")
        with pytest.raises(ApiError) as changed:
            await core.change_choice(pool, by, field=stale, choice_id=red, changes=core.ChoiceChanges(label="x"))
        assert changed.value.status == 404
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices WHERE label IN ('late', 'x')") == 0
    last = await db.fetchval("SELECT type FROM events WHERE workspace_id = $1 ORDER BY position DESC LIMIT 1",
                             workspace.id)
    assert last == "cfv.field.deleted.v1"
