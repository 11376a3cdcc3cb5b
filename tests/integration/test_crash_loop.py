"""A crash loop does not dead-letter acknowledged writes (issue 14, item 1).

Workers killed again and again while applies are blocked (here: the workspace's lock held by a long
transaction; in production an out-of-memory kill, a node drain, a slow database) are redelivered their whole
prefetch each time. A crash not caused by a message must not count against it: only a message the worker was
applying alone, past the workspace's lock, is blamed for a crash. A message that does kill the worker, again
and again, still reaches the dead-letter queue after ``crash_limit`` crashes, with its operations failed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from cfv.broker import topology
from cfv.settings import Settings
from support import EventCollector, Workspace, running_stack, wait_for
from support.pipeline import (
    WorkerProcess,
    assert_applied_once_in_order,
    broker_channel,
    command,
    envelope,
    number_field,
    publish_raw,
    wait_until_succeeded,
    write_streams,
)

KILLS = 12  # the issue saw ten; RabbitMQ dead-letters past the old limit of 10 deliveries


async def _blocked_on_the_lock(db: asyncpg.Connection[Any]) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))


async def _dead_letters(settings: Settings) -> int:
    async with broker_channel(settings) as channel:
        queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
        return int(queue.declaration_result.message_count or 0)


async def test_a_dozen_kills_while_applies_are_blocked_lose_no_acknowledged_write(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector,
        tmp_path: Path) -> None:
    subjects, count = list(range(1, 7)), 100
    async with running_stack(settings, worker=False) as stack:
        field_id = await number_field(stack, workspace)
        operations = await write_streams(stack, workspace, field_id, subjects, count)  # 600 answered 202
        workers: list[WorkerProcess] = []
        try:
            await _crash_loop(settings, workspace.id, db, tmp_path, KILLS, workers)
            await wait_until_succeeded(db, operations, timeout=90)
            await assert_applied_once_in_order(db, events, field_id, subjects, count)
            assert await _dead_letters(settings) == 0
        finally:
            for worker in workers:
                worker.kill()


async def _crash_loop(settings: Settings, workspace_id: int, db: asyncpg.Connection[Any], tmp_path: Path, kills: int,
                      workers: list[WorkerProcess]) -> None:
    """Hold the workspace's lock; ``kills`` times start a worker and kill it once it waits for the lock; then
    release the lock and start one more worker (each appended to ``workers``, for the caller to kill)."""
    blocker = await asyncpg.connect(settings.database_url)
    try:
        async with blocker.transaction():
            await blocker.execute("SELECT pg_advisory_xact_lock($1)", workspace_id)
            for kill in range(kills):
                worker = WorkerProcess(settings, tmp_path / f"worker-{kill}.log")
                workers.append(worker)
                await worker.started()
                await wait_for(lambda: _blocked_on_the_lock(db), 20, "the worker to wait for the workspace's lock")
                worker.kill()
    finally:
        await blocker.close()
    workers.append(WorkerProcess(settings, tmp_path / "worker-last.log"))


async def test_a_message_that_kills_the_worker_each_time_reaches_the_dead_letter_queue_quickly(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    """A message during whose apply the worker dies, every time, is dead-lettered after ``crash_limit`` deaths
    while applied alone, its operation failed with the reason; the write behind it is applied. (Simulated: a
    trigger makes the database slow for that message's value, and the test kills the worker while it waits.)"""
    killer_id, after_id = uuid.uuid4(), uuid.uuid4()
    await db.execute("""
        CREATE FUNCTION slow_for_subject_1() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.subject_id = '1' THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$;
        CREATE TRIGGER slow BEFORE INSERT ON value_versions FOR EACH ROW EXECUTE FUNCTION slow_for_subject_1();
    """)

    async def sleeping() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"))

    try:
        kills, elapsed = await _kill_while_slow(settings, workspace, db, tmp_path, killer_id, after_id, sleeping)
    finally:  # test databases are emptied and reused, not dropped
        await db.execute("DROP TRIGGER slow ON value_versions; DROP FUNCTION slow_for_subject_1()")
    # The first death, with the message in a batch of first deliveries, is not held against it; the next
    # crash_limit, with it alone, are.
    assert kills == settings.crash_limit + 1
    outcome = await db.fetchval("SELECT outcome FROM operations WHERE id = $1", killer_id)
    [error] = outcome["errors"]
    assert error["type"] == "internal", error
    assert f"died {settings.crash_limit} times" in error["message"], error
    assert await _dead_letters(settings) == 1
    assert await db.fetchval("SELECT count(*) FROM message_attempts") == 0
    assert elapsed < 60


async def _kill_while_slow(settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path,
                           killer_id: uuid.UUID, after_id: uuid.UUID,
                           sleeping: Callable[[], Awaitable[bool]]) -> tuple[int, float]:
    """Kill each worker while it sleeps in the killer message's apply, until it refuses the message; return the
    kills and the seconds it all took."""
    routing_key = str(workspace.id)
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        await publish_raw(channel, workspace.key,
                          envelope(command(workspace.id, field_id, 1, 1, command_id=killer_id)), routing_key)
        await publish_raw(channel, workspace.key,
                          envelope(command(workspace.id, field_id, 2, 2, command_id=after_id)), routing_key)
        loop = asyncio.get_running_loop()
        start = loop.time()
        workers: list[WorkerProcess] = []
        kills = 0
        try:
            while True:
                assert kills <= settings.crash_limit + 1, "the message was never dead-lettered"
                worker = WorkerProcess(settings, tmp_path / f"worker-{kills}.log")
                workers.append(worker)
                await worker.started()

                async def applying_or_refused() -> bool:
                    return await sleeping() or await _failed(db, killer_id)
                await wait_for(applying_or_refused, 20, "the worker to apply the message, or refuse it")
                if await _failed(db, killer_id):
                    break
                worker.kill()
                kills += 1
                # Postgres notices a dead client only when it next talks to it: end its sleep (and transaction).
                await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")
                await wait_for(lambda: _not(sleeping), 10, "the dead worker's transaction to end")
            await wait_until_succeeded(db, [after_id], timeout=30)
            elapsed = loop.time() - start
        finally:
            for worker in workers:
                worker.kill()
    return kills, elapsed


async def _not(condition: Callable[[], Awaitable[bool]]) -> bool:
    return not await condition()


async def _failed(db: asyncpg.Connection[Any], operation_id: uuid.UUID) -> bool:
    return bool(await db.fetchval("SELECT status FROM operations WHERE id = $1", operation_id) == "failed")


async def test_writes_rabbitmq_dead_letters_itself_are_failed_with_the_reason(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    """RabbitMQ's own delivery limit is a backstop; should it ever dead-letter a message (here: a limit of 2,
    reached by killing workers blocked on the lock), the message's operations are failed with the reason, so
    that their clients learn it, rather than left pending."""
    settings = settings.model_copy(update={"delivery_limit": 2})
    async with running_stack(settings, worker=False) as stack:
        field_id = await number_field(stack, workspace)
        operations = await write_streams(stack, workspace, field_id, [1], 3)
        workers: list[WorkerProcess] = []
        try:
            await _crash_loop(settings, workspace.id, db, tmp_path, 3, workers)  # returned 3 times: over the limit

            async def settled() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM operations WHERE id = ANY($1::uuid[]) "
                                              "AND status = 'failed'", operations) == len(operations))
            await wait_for(settled, 20, "the dead-lettered writes to fail")
        finally:
            for worker in workers:
                worker.kill()
    for outcome in await db.fetch("SELECT outcome FROM operations WHERE id = ANY($1::uuid[])", operations):
        [error] = outcome["outcome"]["errors"]
        assert error["type"] == "internal", error
        assert error["message"].startswith("RabbitMQ dead-lettered the message (delivery_limit; its limit is 2 "), error
    assert await _dead_letters(settings) >= 1
    assert await db.fetchval("SELECT count(*) FROM value_versions") == 0
