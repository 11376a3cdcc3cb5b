"""The write pipeline under faults, against the real PostgreSQL and RabbitMQ: a worker process killed with
SIGKILL mid-stream, the gateway's broker connection cut, the worker's database connection cut. Whatever was
accepted is applied exactly once, in order; whatever was refused was not applied.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
from cfv.processes import run_relay
from cfv.settings import Settings
from support import EventCollector, Workspace, running_stack, wait_for
from support.pipeline import (
    VALUES,
    WorkerProcess,
    assert_applied_once_in_order,
    number_field,
    status_counts,
    wait_until_succeeded,
    worker_task,
    write_streams,
)
from support.proxy import proxy_to


async def _succeeded(db: asyncpg.Connection[Any]) -> int:
    return (await status_counts(db)).get("succeeded", 0)


async def test_a_worker_killed_mid_stream_loses_nothing(settings: Settings, workspace: Workspace,
                                                        db: asyncpg.Connection[Any], events: EventCollector,
                                                        tmp_path: Path) -> None:
    subjects, count = list(range(1, 11)), 100
    total = len(subjects) * count
    slow = {"worker_prefetch": 50, "worker_batch_max": 5}
    workers: list[WorkerProcess] = []
    try:
        async with running_stack(settings, worker=False) as stack:
            field_id = await number_field(stack, workspace)
            workers.append(WorkerProcess(settings, tmp_path / "a.log", **slow))
            await workers[0].started()
            # B stands by: each shard queue has a single active consumer, A, which registered first.
            workers.append(WorkerProcess(settings, tmp_path / "b.log", **slow))
            await workers[1].started()
            writers = asyncio.create_task(write_streams(stack, workspace, field_id, subjects, count))
            try:
                async def mid_stream() -> bool:
                    return await _succeeded(db) >= total * 3 // 10
                await wait_for(mid_stream, 20, "worker A to apply some writes")
                applied_before_kill = await _succeeded(db)
                workers[0].kill()
                assert applied_before_kill < total, "A applied everything before it could be killed"
                operations = await writers
            finally:
                writers.cancel()
            assert len(set(operations)) == total
            await wait_until_succeeded(db, operations, timeout=30)
            assert workers[1].process.poll() is None, workers[1].output()
            await assert_applied_once_in_order(db, events, field_id, subjects, count)
    finally:
        for worker in workers:
            worker.kill()


async def test_the_gateway_without_its_broker_answers_503_applies_nothing_and_recovers(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async with proxy_to(settings.amqp_url) as proxy:
        gateway_settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url)})
        async with running_stack(gateway_settings, backend=settings) as stack:
            field_id = await number_field(stack, workspace)
            values = iter(range(1000))
            applied: list[int] = []

            async def write(**headers: str) -> tuple[int, Any, dict[str, str]]:
                value = next(values)
                answer = await stack.request("POST", VALUES, workspace, headers=headers, json={
                    "custom_field_value": {"subject_type": "Story", "subject_id": 1,
                                           "custom_field_id": field_id, "value": value}})
                assert answer[0] in (200, 503), answer
                if answer[0] == 200:
                    applied.append(value)
                return answer

            assert (await write())[0] == 200
            await proxy.cut()
            for headers in ({}, {"Prefer": "respond-async"}):
                status, body, answer_headers = await asyncio.wait_for(write(**headers), 15)
                assert status == 503, body
                assert int(answer_headers["Retry-After"]) > 0
                assert [e["type"] for e in body["errors"]] == ["unavailable"]
                assert all(e["message"] for e in body["errors"])
                assert answer_headers["Content-Type"].startswith("application/json")
            await asyncio.sleep(1.0)
            await proxy.restore()

            async def recovered() -> bool:
                return (await write())[0] == 200
            await wait_for(recovered, 30, "the gateway to reach the broker again")
            for _ in range(3):
                assert (await write())[0] == 200

        versions = await db.fetch("SELECT value FROM value_versions ORDER BY seq")
        assert [r["value"] for r in versions] == applied  # nothing answered 503 was applied, ever
        assert proxy.accepted >= 2  # the gateway did reconnect through the proxy


async def test_the_worker_rides_out_a_database_outage(settings: Settings, workspace: Workspace,
                                                      db: asyncpg.Connection[Any], events: EventCollector) -> None:
    subjects = list(range(1, 6))
    async with proxy_to(settings.database_url) as proxy:
        worker_settings = settings.model_copy(update={"database_url": proxy.url(settings.database_url)})
        async with running_stack(settings, worker=False) as stack, worker_task(worker_settings) as worker:
            field_id = await number_field(stack, workspace)
            before_cut = asyncio.create_task(write_streams(stack, workspace, field_id, subjects, 60))
            try:
                async def applying() -> bool:
                    return await _succeeded(db) >= 60
                await wait_for(applying, 20, "the worker to apply some writes")
                await proxy.cut()
                operations = await before_cut
            finally:
                before_cut.cancel()
            await asyncio.sleep(0.3)  # a commit in flight at the cut may still land
            applied_at_cut = await _succeeded(db)
            # Accepted while the worker cannot reach Postgres: queued on the broker.
            operations += await write_streams(stack, workspace, field_id, subjects, 40, start=60)
            await asyncio.sleep(1.0)
            assert await _succeeded(db) == applied_at_cut < len(operations)
            await proxy.restore()
            await wait_until_succeeded(db, operations, timeout=30)
            assert not worker.done(), "the worker stopped"
            await assert_applied_once_in_order(db, events, field_id, subjects, 100)
        assert proxy.accepted >= 2  # the worker did reconnect through the proxy


async def test_a_worker_cut_from_the_broker_hands_over_without_loss_or_reordering(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector) -> None:
    subjects = list(range(1, 11))
    async with proxy_to(settings.amqp_url) as proxy, contextlib.AsyncExitStack() as workers:
        a_settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url), "worker_prefetch": 50,
                                                 "worker_batch_max": 5})
        async with running_stack(settings, worker=False) as stack:
            field_id = await number_field(stack, workspace)
            a = await workers.enter_async_context(worker_task(a_settings))
            writers = asyncio.create_task(write_streams(stack, workspace, field_id, subjects, 60))
            try:
                async def applying() -> bool:
                    return await _succeeded(db) >= 100
                await wait_for(applying, 20, "worker A to apply some writes")
                b = await workers.enter_async_context(worker_task(settings))  # stands by

                async def more() -> bool:
                    return await _succeeded(db) >= 200
                await wait_for(more, 20, "worker A to apply more writes")
                # A loses the broker: its unacked deliveries go to B, while A still applies what it holds.
                await proxy.cut()
                operations = await writers
            finally:
                writers.cancel()
            await wait_until_succeeded(db, operations, timeout=30)
            await assert_applied_once_in_order(db, events, field_id, subjects, 60)
            # A lived through it (a broker restart must not stop workers) and reconnects, as a standby now.
            await proxy.restore()

            async def reconnected() -> bool:
                return proxy.accepted >= 2 and proxy.connections >= 1
            await wait_for(reconnected, 15, "worker A to reconnect")
            assert not a.done() and not b.done()


async def test_events_survive_the_relay_losing_its_broker(settings: Settings, workspace: Workspace,
                                                          db: asyncpg.Connection[Any], events: EventCollector) -> None:
    subjects = list(range(1, 6))
    async with proxy_to(settings.amqp_url) as proxy:
        relay_settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url)})
        relay = asyncio.create_task(run_relay(relay_settings))
        try:
            async with running_stack(settings, relay=False) as stack:
                field_id = await number_field(stack, workspace)
                writers = asyncio.create_task(write_streams(stack, workspace, field_id, subjects, 60))
                try:
                    async def publishing() -> bool:
                        return len(events.messages) >= 50
                    await wait_for(publishing, 20, "the relay to publish some events")
                    await proxy.cut()
                    operations = await writers
                finally:
                    writers.cancel()
                await wait_until_succeeded(db, operations, timeout=30)
                await asyncio.sleep(0.5)
                published = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL "
                                              "AND type LIKE 'cfv.value.%'")
                assert published < len(operations), "every event left before the cut"
                await proxy.restore()
                await assert_applied_once_in_order(db, events, field_id, subjects, 60)
                assert not relay.done()
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(relay, 10)


async def test_a_lost_confirm_of_an_applied_write_is_answered_from_its_record(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async with proxy_to(settings.amqp_url) as proxy:
        gateway_settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url)})
        async with running_stack(gateway_settings, backend=settings) as stack:
            field_id = await number_field(stack, workspace)

            async def write(value: int, **headers: str) -> tuple[int, Any, dict[str, str]]:
                return await stack.request("POST", VALUES, workspace, headers=headers, json={
                    "custom_field_value": {"subject_type": "Story", "subject_id": 1,
                                           "custom_field_id": field_id, "value": value}})

            # The command reaches the broker (and the worker), but the broker's confirm never comes back: the
            # gateway finds the write applied in the database, and says so.
            for value, headers in ((3, {}), (5, {"Prefer": "respond-async"})):
                assert (await write(value - 1))[0] == 200  # on an open connection
                proxy.stall()
                status, body, _ = await asyncio.wait_for(write(value, **headers), 15)
                assert status == 200, body
                [answered] = body["custom_field_values"].values()
                assert (answered["value"], answered["sequence"]) == (value, value - 1)
                await proxy.cut()  # the gateway dropped that connection; a new one must not stall
                await proxy.restore()

        versions = await db.fetch("SELECT seq, value FROM value_versions ORDER BY seq")
        assert [r["value"] for r in versions] == [2, 3, 4, 5]  # each once


async def test_a_write_whose_confirm_was_lost_is_never_applied_after_its_503(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    """The 503 of a lost confirm is final: the command reaches a worker later (here: no worker runs yet), after
    the writes sent since, and is not applied; a retry with the same Idempotency-Key is applied, once."""
    async with proxy_to(settings.amqp_url) as proxy:
        gateway_settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url)})
        async with running_stack(gateway_settings, backend=settings, worker=False) as stack:
            field_id = await number_field(stack, workspace)

            async def write(value: int, **headers: str) -> tuple[int, Any, dict[str, str]]:
                return await stack.request("POST", VALUES, workspace, headers={"Prefer": "respond-async", **headers},
                                           json={"custom_field_value": {"subject_type": "Story", "subject_id": 1,
                                                                        "custom_field_id": field_id, "value": value}})

            status, first, _ = await write(1)
            assert status == 202, first
            proxy.stall()
            status, body, headers = await asyncio.wait_for(write(2, **{"Idempotency-Key": "second"}), 15)
            assert status == 503, body
            assert int(headers["Retry-After"]) > 0
            [error] = body["errors"]
            assert error["type"] == "unavailable"
            assert "never will be" in error["message"], error
            fenced = await db.fetchrow("SELECT id, status, outcome FROM operations WHERE status = 'failed'")
            assert fenced is not None and str(fenced["id"]) in error["message"]
            status, operation, _ = await stack.request("GET", f"/api/v1/operations/{fenced['id']}", workspace)
            assert status == 200, operation
            assert operation["status"] == "failed", operation
            assert [e["type"] for e in operation["errors"]] == ["unavailable"], operation
            await proxy.cut()
            await proxy.restore()

            async def recovered() -> bool:
                return (await write(3))[0] == 202
            await wait_for(recovered, 30, "the gateway to reach the broker again")
            status, retried, _ = await write(2, **{"Idempotency-Key": "second"})
            assert status == 202, retried

            async with worker_task(settings):  # the queue holds 1, 2 (its confirm lost), 3 and the retried 2
                async def drained() -> bool:
                    return await db.fetchval("SELECT count(*) FROM operations WHERE status = 'pending'") == 0
                await wait_for(drained, 30, "the worker to apply the queue")
                await asyncio.sleep(0.5)

        versions = await db.fetch("SELECT seq, value FROM value_versions ORDER BY seq")
        assert [r["value"] for r in versions] == [1, 3, 2]  # not the 2 answered 503; the retry, once
        assert await db.fetchval("SELECT status FROM operations WHERE id = $1", fenced["id"]) == "failed"
