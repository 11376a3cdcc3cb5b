"""The write pipeline's guarantees, against the real PostgreSQL and RabbitMQ: a command is applied at most once
however often it is delivered, each key's writes are applied in the order written (with several worker processes
and prefetch above 1), a message that can never be applied is dead-lettered at once without stopping the stream,
and concurrent writes to one key serialise into one gapless history.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from cfv.broker import topology
from cfv.settings import Settings
from support import EventCollector, Stack, Workspace, running_stack, wait_for
from support.pipeline import (
    VALUES,
    assert_applied_once_in_order,
    broker_channel,
    command,
    envelope,
    number_field,
    publish_raw,
    wait_until_succeeded,
    worker_processes,
    worker_task,
    write_streams,
)


async def test_a_command_delivered_twice_is_applied_once(settings: Settings, workspace: Workspace,
                                                         db: asyncpg.Connection[Any], events: EventCollector) -> None:
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        duplicated_id = uuid.uuid4()
        body = envelope(command(workspace.id, field_id, 1, 42, command_id=duplicated_id))
        routing_key = str(workspace.id)
        # Twice before any worker runs, so both copies wait in the queue together (typically one batch) ...
        await publish_raw(channel, workspace.key, body, routing_key, str(duplicated_id))
        await publish_raw(channel, workspace.key, body, routing_key, str(duplicated_id))
        async with worker_task(settings):
            await wait_until_succeeded(db, [duplicated_id])
            # ... and once more after it was applied (a redelivery after a lost ack).
            await publish_raw(channel, workspace.key, body, routing_key, str(duplicated_id))
            sentinel_id = uuid.uuid4()  # same workspace, same ordered stream: once it is applied, so are the copies
            await publish_raw(channel, workspace.key,
                envelope(command(workspace.id, field_id, 2, 1, command_id=sentinel_id)),
                              routing_key)
            await wait_until_succeeded(db, [sentinel_id])
            # Events leave in commit order, so once the sentinel's event is here every earlier one is too.
            await events.wait_for_count(2)

    versions = await db.fetch("SELECT seq, value, operation_id FROM value_versions WHERE subject_id = '1'")
    assert [tuple(r) for r in versions] == [(1, 42, duplicated_id)]
    current = await db.fetchrow("SELECT seq, value FROM current_values WHERE subject_id = '1'")
    assert current is not None and tuple(current) == (1, 42)
    operation = await db.fetchrow("SELECT status, outcome FROM operations WHERE id = $1", duplicated_id)
    assert operation is not None and operation["status"] == "succeeded"
    assert [v["sequence"] for v in operation["outcome"]["values"]] == [1]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE type LIKE 'cfv.value.%'") == 2
    announced = [e for e in events.events if e["data"]["subject_id"] == "1"]
    assert len(announced) == 1, announced
    assert announced[0]["data"]["operation_id"] == str(duplicated_id)
    assert announced[0]["data"]["after"]["value"] == 42


async def test_two_worker_processes_apply_each_key_in_write_order(settings: Settings, workspace: Workspace,
                                                                  db: asyncpg.Connection[Any], events: EventCollector,
                                                                  tmp_path: Path) -> None:
    subjects = list(range(1, 11))
    with worker_processes(settings, tmp_path, 2, worker_prefetch=50) as workers:
        async with running_stack(settings, worker=False) as stack:
            field_id = await number_field(stack, workspace)
            for worker in workers:
                await worker.started()
            operations = await write_streams(stack, workspace, field_id, subjects, 100)
            assert len(set(operations)) == 1000
            await wait_until_succeeded(db, operations)
            await assert_applied_once_in_order(db, events, field_id, subjects, 100)
        for worker in workers:
            assert worker.process.poll() is None, f"worker {worker.pid} died:\n{worker.output()}"


async def _dead_letters(channel: aio_pika.abc.AbstractChannel) -> int:
    queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    return count


async def test_poison_messages_are_dead_lettered_at_once_and_the_stream_goes_on(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    routing_key = str(workspace.id)
    v99_id, misrouted_id, good_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        poison = {
            b"\xff this is not JSON {": routing_key,
            envelope(command(workspace.id, field_id, 1, 1, command_id=v99_id), v=99): routing_key,
            # A valid command, but routed as another workspace's: it would break that workspace's ordering.
            envelope(command(workspace.id, field_id, 1, 2, command_id=misrouted_id)): str(workspace.id + 1),
        }
        async with worker_task(settings) as worker:
            for body, key in poison.items():
                await publish_raw(channel, workspace.key, body, key)
            await publish_raw(channel, workspace.key,
                envelope(command(workspace.id, field_id, 1, 3, command_id=good_id)),
                              routing_key)
            await wait_until_succeeded(db, [good_id])

            async def all_dead() -> bool:
                return await _dead_letters(channel) >= len(poison)
            await wait_for(all_dead, 10, "the poison messages in the dead-letter queue")
            assert not worker.done(), "the worker stopped"

        # With the worker gone, anything it had not settled would be back in its queue: nothing is.
        for n in range(settings.command_shards):
            queue = await channel.declare_queue(topology.shard_queue(n), passive=True)
            assert queue.declaration_result.message_count == 0, topology.shard_queue(n)
        dead = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
        letters: dict[bytes, aio_pika.abc.AbstractIncomingMessage] = {}
        while (message := await dead.get(no_ack=True, fail=False)) is not None:
            letters[message.body] = message
        assert set(letters) == set(poison)
        for message in letters.values():
            # Refused on its first delivery, not redelivered until the delivery limit.
            deaths = message.headers["x-death"]
            assert isinstance(deaths, list) and len(deaths) == 1, deaths
            death = deaths[0]
            assert isinstance(death, dict)
            assert death["reason"] == "rejected" and death["count"] == 1, death
            assert str(death["queue"]).startswith(topology.COMMANDS_EXCHANGE + ".")

    rows = await db.fetch("SELECT id, status, outcome FROM operations")
    outcomes = {r["id"]: (r["status"], r["outcome"]) for r in rows}
    assert outcomes.keys() == {v99_id, misrouted_id, good_id}
    for failed in (v99_id, misrouted_id):
        status, outcome = outcomes[failed]
        assert status == "failed", outcome
        [error] = outcome["errors"]
        assert error["type"] == "validation" and error["message"], error
    assert "routing key" in outcomes[misrouted_id][1]["errors"][0]["message"]
    assert outcomes[good_id][0] == "succeeded"
    versions = await db.fetch("SELECT seq, value FROM value_versions")
    assert [tuple(r) for r in versions] == [(1, 3)]  # only the good command was applied


async def test_concurrent_first_writes_to_one_key_serialise(stack: Stack, workspace: Workspace,
                                                           db: asyncpg.Connection[Any],
                                                           events: EventCollector) -> None:
    field_id = await number_field(stack, workspace)

    async def write(value: int) -> dict[str, Any]:
        status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": {
            "subject_type": "Story", "subject_id": 5, "custom_field_id": field_id, "value": value}})
        assert status == 200, body
        [written] = body["custom_field_values"].values()
        return dict(written)

    answers = await asyncio.gather(*(write(n) for n in range(20)))
    by_seq = {a["sequence"]: a for a in answers}
    assert sorted(by_seq) == list(range(1, 21))
    assert len({a["id"] for a in answers}) == 20

    rows = await db.fetch("SELECT seq, value_id, value FROM current_values")
    assert [tuple(r) for r in rows] == [(20, int(by_seq[20]["id"]), by_seq[20]["value"])]
    versions = await db.fetch("SELECT seq, id, value FROM value_versions ORDER BY seq")
    assert [tuple(r) for r in versions] == [(s, int(by_seq[s]["id"]), by_seq[s]["value"]) for s in range(1, 21)]

    announced = await events.wait_for_count(20)
    assert len(announced) == 20
    assert [e["data"]["sequence"] for e in announced] == list(range(1, 21))
    assert [e["type"] for e in announced] == ["cfv.value.created.v1"] + ["cfv.value.replaced.v1"] * 19
    for previous, event in itertools.pairwise(announced):
        assert event["data"]["before"] == previous["data"]["after"]
    assert announced[-1]["data"]["after"] == {"id": int(by_seq[20]["id"]), "value": by_seq[20]["value"],
        "external_id": None, "external_source": None}


async def test_a_refused_message_naming_what_postgres_cannot_record_does_not_stop_the_worker(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    routing_key = str(workspace.id)
    unnotifiable_id, good_id = uuid.uuid4(), uuid.uuid4()
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        # A workspace id beyond bigint, in a message refused for its version.
        beyond = envelope(command(2**63, field_id, 1, 1), v=99)
        # A command whose reply channel Postgres could not notify: the envelope's schema refuses it now (reply_to is
        # a gateway id), before the database would fail on it.
        unnotifiable = command(workspace.id, field_id, 1, 2, command_id=unnotifiable_id)
        unnotifiable["reply_to"] = "x" * 100
        async with worker_task(settings) as worker:
            await publish_raw(channel, workspace.key, beyond, routing_key)
            await publish_raw(channel, workspace.key, envelope(unnotifiable), routing_key)
            await publish_raw(channel, workspace.key,
                envelope(command(workspace.id, field_id, 1, 3, command_id=good_id)),
                              routing_key)
            await wait_until_succeeded(db, [good_id], timeout=10)

            async def both_dead() -> bool:
                return await _dead_letters(channel) >= 2
            await wait_for(both_dead, 10, "both messages in the dead-letter queue")
            assert not worker.done(), "the worker stopped"

    row = await db.fetchrow("SELECT status, outcome FROM operations WHERE id = $1", unnotifiable_id)
    assert row is not None and row["status"] == "failed", row
    assert [e["type"] for e in row["outcome"]["errors"]] == ["validation"]
    assert "reply_to" in row["outcome"]["errors"][0]["message"]
    versions = await db.fetch("SELECT seq, value FROM value_versions")
    assert [tuple(r) for r in versions] == [(1, 3)]


async def test_a_command_that_breaks_the_worker_fails_alone_and_the_worker_goes_on(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    routing_key = str(workspace.id)
    first_id, bad_id, last_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        # A number beyond 64 bits: valid JSON that an integration may publish, which orjson cannot encode.
        bad = envelope(command(workspace.id, field_id, 2, "BIG", command_id=bad_id)).replace(
            b'"BIG"', str(2**64).encode())
        # Published before the worker starts, so the three are typically applied as one batch.
        await publish_raw(channel, workspace.key,
            envelope(command(workspace.id, field_id, 1, 1, command_id=first_id)), routing_key)
        await publish_raw(channel, workspace.key, bad, routing_key)
        await publish_raw(channel, workspace.key,
            envelope(command(workspace.id, field_id, 3, 3, command_id=last_id)), routing_key)
        async with worker_task(settings) as worker:
            await wait_until_succeeded(db, [first_id, last_id], timeout=10)

            async def settled() -> bool:
                return bool(await db.fetchval("SELECT status FROM operations WHERE id = $1", bad_id) == "failed")
            await wait_for(settled, 10, "the bad command to fail")
            assert not worker.done(), "the worker stopped"
            outcome = await db.fetchval("SELECT outcome FROM operations WHERE id = $1", bad_id)
            [error] = outcome["errors"]
            if error["type"] == "internal":  # kept for the operator, refused at its first delivery
                async def dead() -> bool:
                    return await _dead_letters(channel) == 1
                await wait_for(dead, 10, "the bad message in the dead-letter queue")
            else:
                assert error["type"] == "validation", outcome
                assert await _dead_letters(channel) == 0

    versions = await db.fetch("SELECT subject_id, seq, value FROM value_versions ORDER BY subject_id")
    assert [tuple(r) for r in versions] == [("1", 1, 1), ("3", 1, 3)]
