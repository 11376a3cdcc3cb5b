"""The event log and replay (issue 11): every change event has a ``position`` (per workspace, strictly increasing
in commit order) and stays readable for CFV_EVENT_RETENTION through ``GET /api/v1/events`` (filters, paging,
each field's read_access, 410 past the retention) and ``cfv events tail|replay``; the active relay prunes what
is published and older, never a workspace's newest event."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from cfv.relay import Relay
from cfv.settings import Settings
from cfv_schemas.events import ChangeEvent
from support import EventCollector, Stack, Workspace, running_stack, wait_for
from support.kantata import item, write

EVENTS = "/api/v1/events"


async def _fields(stack: Stack, workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two fields: their definition events take positions 1 and 2 of the log (the values' come after)."""
    points = await stack.create_field(workspace, name="Points", subject_type="User", value_type="number",
                                      read_access="account_collaboration")
    secret = await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="number",
                                      read_access="account_admin", write_access="account_admin")
    return points, secret


async def _write_some(stack: Stack, workspace: Workspace, points: dict[str, Any], secret: dict[str, Any]) -> None:
    for n in range(1, 4):
        status, body, _ = await write(stack, workspace, item(points, n, subject_id=n))
        assert status == 200, body
    status, body, _ = await write(stack, workspace, item(secret, 1000, subject_id=7))
    assert status == 200, body
    value_id = await _value_id(stack, workspace, points, 2)
    status, body, _ = await stack.request("DELETE", f"/api/v1/custom_field_values/{value_id}", workspace)
    assert status == 204, body


async def _value_id(stack: Stack, workspace: Workspace, field: dict[str, Any], subject_id: int) -> str:
    status, body, _ = await stack.request(
        "GET", f"/api/v1/custom_field_values?subject_type=User&with_subject_id={subject_id}"
               f"&with_custom_field_id={field['id']}", workspace)
    assert status == 200, body
    [value_id] = body["custom_field_values"]
    return str(value_id)


async def _page(stack: Stack, workspace: Workspace, query: str = "") -> dict[str, Any]:
    status, body, _ = await stack.request("GET", EVENTS + query, workspace)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def test_the_log_answers_what_a_live_consumer_received_with_positions(
        stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    points, secret = await _fields(stack, workspace)
    await _write_some(stack, workspace, points, secret)
    live = await events.wait_for_count(5)  # the value events (the collector binds no definition event)
    assert [e["position"] for e in live] == [3, 4, 5, 6, 7]

    page = await _page(stack, workspace)
    assert [e["type"] for e in page["events"][:2]] == ["cfv.field.created.v1"] * 2
    assert page["events"][2:] == live and page["next_after"] == 7
    for event in page["events"][2:]:
        ChangeEvent.model_validate(event)
    assert await _page(stack, workspace, "?after=7") == {"events": [], "next_after": 7}

    seen, after = [], 0
    while True:  # paging two at a time
        page = await _page(stack, workspace, f"?after={after}&limit=2")
        if not page["events"]:
            break
        assert len(page["events"]) <= 2
        seen += page["events"]
        after = page["next_after"]
    assert seen[2:] == live

    deleted = await _page(stack, workspace, "?type=cfv.value.deleted.v1")
    assert [(e["type"], e["data"]["subject_id"]) for e in deleted["events"]] == [("cfv.value.deleted.v1", "2")]
    assert deleted["next_after"] == 7  # how far it looked, shown or not
    estimates = await _page(stack, workspace, "?subject_type=Estimate")
    assert [(e["type"], e["data"]["custom_field_id"]) for e in estimates["events"]] == [
        ("cfv.field.created.v1", int(secret["id"])), ("cfv.value.created.v1", int(secret["id"]))]
    by_field = await _page(stack, workspace, f"?custom_field_id={points['id']},999&after=3")
    assert [e["position"] for e in by_field["events"]] == [4, 5, 7]


@pytest.mark.parametrize("query", ["?limit=0", "?limit=1001", "?after=-1", "?after=x", "?type=cfv.nope.v1",
                                   "?subject_type=Planet", "?custom_field_id=a", "?custom_field_id=,", "?colour=red"])
async def test_a_bad_query_is_400_naming_what_is_wrong(stack: Stack, workspace: Workspace, query: str) -> None:
    status, body, _ = await stack.request("GET", EVENTS + query, workspace)
    assert status == 400, body
    assert body["errors"] and all(e["type"] == "validation" for e in body["errors"]), body


async def test_events_of_fields_the_reader_may_not_read_are_left_out(
        stack: Stack, workspace: Workspace, events: EventCollector, db: asyncpg.Connection[Any]) -> None:
    points, secret = await _fields(stack, workspace)
    await _write_some(stack, workspace, points, secret)
    await events.wait_for_count(5)
    status, body, _ = await stack.request("POST", "/api/v1/users", workspace, json={"user": {
        "name": "Ann", "email": "ann@example.com", "account_role": "reports_viewer_with_cost"}})
    assert status == 201, body
    ann = next(iter(body["users"]))
    status, body, _ = await stack.request("POST", f"/api/v1/users/{ann}/api_keys", workspace, json={})
    assert status == 201, body
    key = next(iter(body["api_keys"].values()))["key"]
    reader = Workspace(workspace.id, workspace.slug, key)
    page = await _page(stack, reader)
    # not the cost field's definition event, nor its value's: their positions skip
    assert [e["position"] for e in page["events"]] == [1, 3, 4, 5, 7]
    assert page["next_after"] == 7


async def test_the_relay_prunes_what_is_old_and_published_and_a_position_past_it_is_410(
        settings: Settings, workspace: Workspace, events: EventCollector, db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack:
        points, secret = await _fields(stack, workspace)
        await _write_some(stack, workspace, points, secret)
        await events.wait_for_count(5)

        async def published() -> bool:
            return await db.fetchval("SELECT position FROM relay_cursors WHERE workspace_id = $1",
                                     workspace.id) == 7
        await wait_for(published, 10, "the relay's cursor to reach 7")
        await db.execute("UPDATE events SET created_at = now() - interval '8 days' WHERE workspace_id = $1",
                         workspace.id)
        assert await Relay(settings).prune() == 6  # all old and published, but the newest stays
        assert [r["position"] for r in await db.fetch("SELECT position FROM events ORDER BY 1")] == [7]

        status, body, _ = await stack.request("GET", EVENTS + "?after=0", workspace)
        assert status == 410, body
        [error] = body["errors"]
        assert error["type"] == "gone" and error["field"] == "after" and error["oldest_position"] == 7
        assert [e["position"] for e in (await _page(stack, workspace, "?after=6"))["events"]] == [7]
        assert [e["position"] for e in (await _page(stack, workspace))["events"]] == [7]

        status, body, _ = await write(stack, workspace, item(points, 9, subject_id=9))
        assert status == 200, body  # the next event follows the newest kept: positions never go back
        assert [e["position"] for e in (await _page(stack, workspace, "?after=7"))["events"]] == [8]


async def test_unpublished_events_are_never_pruned(settings: Settings, workspace: Workspace,
                                                   db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings, relay=False) as stack:
        points, secret = await _fields(stack, workspace)
        await _write_some(stack, workspace, points, secret)
        await db.execute("UPDATE events SET created_at = now() - interval '8 days'")
        assert await Relay(settings).prune() == 0
        assert await db.fetchval("SELECT count(*) FROM events") == 7  # the two fields' events and the five values'


def _cfv(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url, CFV_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "cfv", *args],  # noqa: S603 (our own command)
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def _finished(process: subprocess.Popen[bytes], timeout: float = 30) -> tuple[int, str, str]:
    out, err = await asyncio.to_thread(process.communicate, timeout=timeout)
    return process.returncode, out.decode(), err.decode()


async def test_cfv_events_tail_prints_the_log_and_follows_it(stack: Stack, workspace: Workspace,
                                                             events: EventCollector) -> None:
    points, secret = await _fields(stack, workspace)
    await _write_some(stack, workspace, points, secret)
    live = await events.wait_for_count(5)
    code, out, err = await _finished(_cfv(stack.settings, "events", "tail", "--workspace", "acme", "--after", "4",
                                          "--no-follow"))
    assert code == 0, err
    assert [orjson.loads(line) for line in out.splitlines()] == live[2:]  # every event, the cost's too

    follower = _cfv(stack.settings, "events", "tail", "--workspace", "acme")
    try:
        assert follower.stderr is not None
        said = await asyncio.wait_for(asyncio.to_thread(follower.stderr.readline), 30)
        assert said.decode().strip() == "events of acme after position 7, following"  # the newest: what comes next
        status, body, _ = await write(stack, workspace, item(points, 42, subject_id=42))
        assert status == 200, body
        assert follower.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 10)
        assert orjson.loads(line)["position"] == 8 and orjson.loads(line)["data"]["after"]["value"] == 42
    finally:
        follower.terminate()
        follower.wait(10)


async def test_cfv_events_replay_republishes_the_events_unchanged_into_a_queue(
        stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    points, secret = await _fields(stack, workspace)
    await _write_some(stack, workspace, points, secret)
    await events.wait_for_count(5)
    live = {m.message_id: m for m in events.messages}

    connection = await aio_pika.connect(stack.settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("catch-up", durable=True)
        code, out, err = await _finished(_cfv(stack.settings, "events", "replay", "--workspace", "acme",
                                              "--after", "3", "--queue", "catch-up"))
        assert code == 0, err
        assert out.strip() == "replayed 4 event(s) into catch-up, up to position 7"
        replayed = []
        for _ in range(4):
            message = await queue.get(timeout=5)
            await message.ack()
            replayed.append(message)
        assert await queue.get(fail=False) is None
        assert [orjson.loads(m.body)["position"] for m in replayed] == [4, 5, 6, 7]
        for message in replayed:  # as the relay published it: same id, body, type and content type
            original = live[message.message_id]
            assert (message.body, message.type, message.content_type) == (
                original.body, original.type, original.content_type)

        code, out, err = await _finished(_cfv(stack.settings, "events", "replay", "--workspace", "acme",
                                              "--after", "0", "--queue", "no-such-queue"))
        assert code != 0 and "no queue 'no-such-queue'" in err, (out, err)
    finally:
        await connection.close()


async def test_the_relay_prunes_old_operations_and_idempotency_keys_never_pending_ones(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack:
        points, _ = await _fields(stack, workspace)
        answers = []
        for n in range(3):
            status, body, _ = await write(stack, workspace, item(points, n, subject_id=n + 1),
                                          headers={"Idempotency-Key": f"key-{n}"})
            assert status == 200, body
            answers.append(body)
        operations = [r["id"] for r in await db.fetch("SELECT id FROM operations ORDER BY created_at")]
        assert len(operations) == 3
        pending = uuid.uuid4()
        await db.execute("INSERT INTO operations (id, workspace_id, status, created_at) VALUES "
                         "($1, $2, 'pending', now() - interval '90 days')", pending, workspace.id)
        # The first is older than both retentions; the second's key only is older than its retention.
        await db.execute("UPDATE operations SET created_at = now() - interval '31 days' WHERE id = $1", operations[0])
        await db.execute("UPDATE idempotency_keys SET created_at = now() - interval '8 days' "
                         "WHERE key LIKE '%key-0' OR key LIKE '%key-1'")
        await Relay(settings).prune()
        assert {r["id"] for r in await db.fetch("SELECT id FROM operations")} == {*operations[1:], pending}
        assert sorted(r["key"].rsplit("|", 1)[-1] for r in await db.fetch("SELECT key FROM idempotency_keys")) == [
            "key-2"]
        status, _, _ = await stack.request("GET", f"/api/v1/operations/{operations[0]}", workspace)
        assert status == 404
        status, body, _ = await stack.request("GET", f"/api/v1/operations/{operations[1]}", workspace)
        assert status == 200 and body["status"] == "succeeded", body
        # A retry with a forgotten key is a new request: applied again (a new version); a remembered one is not.
        status, body, _ = await write(stack, workspace, item(points, 1, subject_id=2),
                                      headers={"Idempotency-Key": "key-1"})
        assert status == 200 and next(iter(body["custom_field_values"].values()))["sequence"] == 2, body
        status, body, _ = await write(stack, workspace, item(points, 2, subject_id=3),
                                      headers={"Idempotency-Key": "key-2"})
        assert status == 200 and next(iter(body["custom_field_values"].values()))["sequence"] == 1, body
