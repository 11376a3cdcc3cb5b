"""``Idempotency-Key``: a retry is answered from the first write and applies nothing again."""

from __future__ import annotations

import asyncio
from typing import Any

from cfv.store.accounts import issue_key
from support import EventCollector, Stack, Workspace
from support.kantata import assert_errors_shape, counts, item, values_of, write


async def test_same_key_and_body_answers_the_first_result_once(stack: Stack, workspace: Workspace, db: Any,
                                                               events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "order-17"}
    items = [item(points, 5), item(points, 6, subject_id=8)]
    status, first, _ = await write(stack, workspace, *items, headers=key)
    assert status == 200, first
    assert await counts(db) == (2, 2, 2)

    for _ in range(2):
        status, again, _ = await write(stack, workspace, *items, headers=key)
        assert status == 200, again
        assert again == first  # same value ids, sequences, operation id
    assert await counts(db) == (2, 2, 2)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1

    # The key keeps its first answer even after the value moved on.
    status, body, _ = await write(stack, workspace, item(points, 7))
    assert status == 200 and values_of(body)[0]["sequence"] == 2
    status, again, _ = await write(stack, workspace, *items, headers=key)
    assert again == first
    assert await counts(db) == (3, 2, 3)
    await events.wait_for_count(3)
    await asyncio.sleep(0.3)
    assert len(events.messages) == 3  # a replay announces nothing


async def test_same_key_with_another_body_is_a_422_conflict(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "order-18"}
    status, first, _ = await write(stack, workspace, item(points, 5), headers=key)
    assert status == 200, first

    for different in ([item(points, 6)], [item(points, 5, subject_id=8)], [item(points, 5), item(points, 5)]):
        status, body, _ = await write(stack, workspace, *different, headers=key)
        assert status == 422, body
        [error] = assert_errors_shape(body)
        assert error["type"] == "conflict" and error["field"] == "Idempotency-Key"
    assert await counts(db) == (1, 1, 1)
    current = await db.fetchval("SELECT value FROM current_values")
    assert current == 5


async def test_keys_are_per_workspace(stack: Stack, workspace: Workspace, other_workspace: Workspace,
                                      db: Any) -> None:
    ours = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    theirs = await stack.create_field(other_workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "shared-key"}
    status, first, _ = await write(stack, workspace, item(ours, 1), headers=key)
    assert status == 200, first
    status, second, _ = await write(stack, other_workspace, item(theirs, 2), headers=key)
    assert status == 200, second  # not a conflict: another workspace's key
    [a], [b] = values_of(first), values_of(second)
    assert a["id"] != b["id"] and (a["value"], b["value"]) == (1, 2)
    assert await counts(db) == (2, 2, 2)
    rows = await db.fetch("SELECT workspace_id FROM idempotency_keys WHERE key LIKE '%|shared-key' ORDER BY 1")
    assert [r["workspace_id"] for r in rows] == sorted([workspace.id, other_workspace.id])


async def test_a_refused_request_may_be_corrected_under_the_same_key(stack: Stack, workspace: Workspace,
                                                                     db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "fix-me"}
    status, body, _ = await write(stack, workspace, item(points, "ten"), headers=key)
    assert status == 422 and body["errors"][0]["type"] == "validation"
    status, body, _ = await write(stack, workspace, item(points, 10), headers=key)
    assert status == 200, body
    status, again, _ = await write(stack, workspace, item(points, 10), headers=key)
    assert again == body
    assert await counts(db) == (1, 1, 1)


async def test_without_a_key_every_retry_writes_again(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    answers = [await write(stack, workspace, item(points, 5)) for _ in range(2)]
    assert [values_of(body)[0]["sequence"] for _, body, _ in answers] == [1, 2]
    assert await counts(db) == (2, 1, 2)


async def test_concurrent_retries_with_one_key_apply_once(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "burst"}
    answers = await asyncio.gather(*(write(stack, workspace, item(points, 3), headers=key) for _ in range(10)))
    assert {status for status, _, _ in answers} == {200}
    assert len({values_of(body)[0]["id"] for _, body, _ in answers}) == 1
    assert await counts(db) == (1, 1, 1)


async def test_async_retry_with_a_key_points_at_the_same_values(stack: Stack, workspace: Workspace,
                                                                db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    key = {"Idempotency-Key": "async-key"}
    status, first, _ = await write(stack, workspace, item(points, 3), headers=key)
    assert status == 200, first
    status, body, headers = await write(stack, workspace, item(points, 3),
                                        headers={**key, "Prefer": "respond-async"})
    assert status == 202, body
    location = headers["Location"]
    for _ in range(400):
        status, operation, _ = await stack.request("GET", location, workspace)
        if operation["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert operation["status"] == "succeeded", operation
    assert values_of(operation["result"]) == values_of(first)
    assert await counts(db) == (1, 1, 1)


async def test_keys_are_per_api_key(stack: Stack, workspace: Workspace, db: Any) -> None:
    """Another API key of the same workspace reusing an Idempotency-Key neither replays the first key's outcome
    nor is refused for it: the key is its own request."""
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    second = Workspace(workspace.id, workspace.slug, (await issue_key(db, workspace.id, name="second")).secret)
    key = {"Idempotency-Key": "shared-key"}
    status, first, _ = await write(stack, workspace, item(points, 1), headers=key)
    assert status == 200, first
    status, other, _ = await write(stack, second, item(points, 2), headers=key)
    assert status == 200, other
    assert values_of(other)[0]["value"] == 2 and values_of(other)[0]["id"] != values_of(first)[0]["id"]
    status, again, _ = await write(stack, workspace, item(points, 1), headers=key)
    assert status == 200 and values_of(again) == values_of(first)  # the first key's retry still replays
    assert await counts(db) == (2, 1, 2)  # two versions of one value
