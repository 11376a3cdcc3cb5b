"""Placing subjects in projects: repeats within a batch, idempotency (issue 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from support import Stack, Workspace

PLACE = "/api/v1/subject_projects"


def placements(*pairs: tuple[int, int]) -> dict[str, Any]:
    return {"subject_projects": [{"subject_type": "Story", "subject_id": story, "project": project}
                                 for story, project in pairs]}


async def placed(db: asyncpg.Connection[Any], workspace: Workspace, story: int) -> str | None:
    project: str | None = await db.fetchval(
        "SELECT project FROM subject_projects WHERE workspace_id = $1 AND subject_type = 'Story' AND subject_id = $2",
        workspace.id, str(story))
    return project


async def test_the_last_placement_of_a_subject_wins_within_a_request_and_a_batch(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    status, body, _ = await stack.request("PUT", PLACE, workspace, json=placements((7, 12), (7, 13)))
    assert status == 200, body
    assert await placed(db, workspace, 7) == "13"
    # Concurrent requests placing the same subject travel (and are applied) together: none fails.
    answers = await asyncio.gather(*[stack.request("PUT", PLACE, workspace, json=placements((8, 20 + n)))
                                     for n in range(10)])
    assert [status for status, _, _ in answers] == [200] * 10, answers
    assert await placed(db, workspace, 8) in {str(20 + n) for n in range(10)}


async def test_a_placement_is_idempotent(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    key = {"Idempotency-Key": "place-7"}
    status, first, _ = await stack.request("PUT", PLACE, workspace, json=placements((7, 12)), headers=key)
    assert status == 200, first
    status, body, _ = await stack.request("PUT", PLACE, workspace, json=placements((7, 13)), headers=key)
    assert status == 422 and body["errors"][0]["type"] == "conflict", body
    assert await placed(db, workspace, 7) == "12"
    status, again, _ = await stack.request("PUT", PLACE, workspace, json=placements((7, 12)), headers=key)
    assert (status, again) == (200, first)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1
