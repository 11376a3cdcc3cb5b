"""Asynchronous writes: ``Prefer: respond-async``, the 202 after a wait timeout, and polling operations."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from cfv.processes import run_worker
from cfv.settings import Settings
from cfv_schemas.kantata import OperationOut
from support import Stack, Workspace, running_stack
from support.kantata import OPERATIONS, assert_errors_shape, counts, item, values_of, write

ASYNC = {"Prefer": "respond-async"}


def accepted(status: int, body: Any, headers: dict[str, str]) -> str:
    """Check a 202 answer; return the operation's location."""
    assert status == 202, body
    operation = body["operation"]
    location = f"{OPERATIONS}/{operation['id']}"
    uuid.UUID(operation["id"])
    assert headers["Location"] == location == operation["location"]
    assert operation["status"] == "pending"
    return location


async def poll(stack: Stack, workspace: Workspace, location: str, until: str,
               keep_running: Callable[[], None] | None = None) -> dict[str, Any]:
    """GET the operation until its status is ``until``; check each answer's shape; return the last."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        if keep_running is not None:
            keep_running()
        status, body, _ = await stack.request("GET", location, workspace)
        assert status == 200, body
        OperationOut.model_validate(body)
        assert body["status"] in ("pending", until), body
        if body["status"] == until:
            return dict(body)
        assert asyncio.get_running_loop().time() < deadline, f"operation still {body['status']}"
        await asyncio.sleep(0.05)


async def test_respond_async_answers_202_then_the_operation_succeeds(stack: Stack, workspace: Workspace,
                                                                     db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, headers = await write(stack, workspace, item(points, 8), item(points, 9, subject_id=9),
                                        headers=ASYNC)
    location = accepted(status, body, headers)
    assert headers["Preference-Applied"] == "respond-async"
    operation_id = body["operation"]["id"]

    done = await poll(stack, workspace, location, "succeeded")
    assert done["id"] == operation_id
    assert "errors" not in done or not done["errors"]
    result = done["result"]
    assert result["count"] == 2 and [ref["key"] for ref in result["results"]] == ["custom_field_values"] * 2
    values = values_of(result)
    assert [(v["subject_id"], v["value"], v["sequence"]) for v in values] == [(7, 8, 1), (9, 9, 1)]
    assert {v["operation_id"] for v in values} == {operation_id}
    assert await counts(db) == (2, 2, 2)
    row = await db.fetchrow("SELECT status, completed_at FROM operations WHERE id = $1", uuid.UUID(operation_id))
    assert row["status"] == "succeeded" and row["completed_at"] is not None

    # Polling again answers the same: the outcome is stored, not recomputed.
    status, again, _ = await stack.request("GET", location, workspace)
    assert again == done


async def test_failing_async_write_ends_failed_with_its_errors(stack: Stack, workspace: Workspace,
                                                               db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, headers = await write(stack, workspace, item(points, 1), item(points, "many", subject_id=3),
                                        headers=ASYNC)
    location = accepted(status, body, headers)
    failed = await poll(stack, workspace, location, "failed")
    assert failed["http_status"] == 422
    assert "result" not in failed
    [error] = failed["errors"]
    assert (error["type"], error["field"], error["index"], error["custom_field_id"]) == (
        "validation", "value", 1, int(points["id"]))
    assert await counts(db) == (0, 0, 0)

    # A write whose fields are all unknown fails as "not found".
    status, body, headers = await write(stack, workspace, {**item(points, 1), "custom_field_id": 999_999},
                                        headers=ASYNC)
    failed = await poll(stack, workspace, accepted(status, body, headers), "failed")
    assert failed["http_status"] == 404 and failed["errors"][0]["type"] == "not_found"


async def test_operations_are_private_to_their_workspace(stack: Stack, workspace: Workspace,
                                                         other_workspace: Workspace) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, headers = await write(stack, workspace, item(points, 1), headers=ASYNC)
    location = accepted(status, body, headers)
    await poll(stack, workspace, location, "succeeded")

    status, theirs, _ = await stack.request("GET", location, other_workspace)
    status_missing, missing, _ = await stack.request("GET", f"{OPERATIONS}/{uuid.uuid4()}", other_workspace)
    assert (status, status_missing) == (404, 404)
    assert theirs == missing  # indistinguishable from an operation that does not exist
    assert assert_errors_shape(theirs)[0]["type"] == "not_found"


async def test_unknown_or_garbage_operation_ids_are_404(stack: Stack, workspace: Workspace) -> None:
    for operation_id in (str(uuid.uuid4()), "garbage", "12345", "0" * 40, "%20", "'; DROP TABLE operations; --"):
        status, body, headers = await stack.request("GET", f"{OPERATIONS}/{operation_id}", workspace)
        assert status == 404, (operation_id, body)
        assert headers["Content-Type"].startswith("application/json")
        assert assert_errors_shape(body)[0]["type"] == "not_found"


async def test_synchronous_write_is_an_operation_too(stack: Stack, workspace: Workspace) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 4))
    assert status == 200, body
    [value] = values_of(body)
    status, operation, _ = await stack.request("GET", f"{OPERATIONS}/{value['operation_id']}", workspace)
    assert status == 200 and operation["status"] == "succeeded"
    assert values_of(operation["result"]) == [value]


async def test_wait_timeout_answers_202_and_a_late_worker_completes_the_operation(
        settings: Settings, workspace: Workspace, db: Any) -> None:
    impatient = settings.model_copy(update={"write_timeout": 0.05})
    async with running_stack(impatient, worker=False) as stack:
        points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        status, body, headers = await write(stack, workspace, item(points, 21))
        location = accepted(status, body, headers)
        assert "Preference-Applied" not in headers  # the client did not ask for it; the wait timed out
        operation_id = uuid.UUID(body["operation"]["id"])

        await asyncio.sleep(0.3)
        status, pending, _ = await stack.request("GET", location, workspace)
        assert status == 200 and pending == {"id": str(operation_id), "status": "pending"}
        assert await db.fetchval("SELECT status FROM operations WHERE id = $1", operation_id) == "pending"
        assert await counts(db) == (0, 0, 0)

        worker = asyncio.create_task(run_worker(impatient))

        def keep_running() -> None:
            # RabbitMQ may refuse a consumer of a quorum queue declared a moment ago ("noproc"); a worker
            # process would be restarted by its supervisor, so this test restarts it too.
            nonlocal worker
            if worker.done():
                assert worker.cancelled() or worker.exception() is not None
                worker = asyncio.create_task(run_worker(impatient))

        try:
            done = await poll(stack, workspace, location, "succeeded", keep_running=keep_running)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(worker, 10)
        [value] = values_of(done["result"])
        assert (value["value"], value["sequence"], value["operation_id"]) == (21, 1, str(operation_id))
        assert await counts(db) == (1, 1, 1)
