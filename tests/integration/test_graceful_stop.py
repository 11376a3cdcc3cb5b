"""SIGTERM drains every process, each within CFV_SHUTDOWN_TIMEOUT (issue 12): a worker stops consuming between two
batches (the batch being applied commits, is answered and acked; what it held unapplied goes back to the queue,
applied later exactly once and in order); the gateway turns unready, takes no new connections and answers the
requests in flight; the relay finishes its round. Past the timeout a process stops anyway, as after a crash:
nothing is lost or applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cfv.processes import run_relay
from cfv.settings import Settings
from support import EventCollector, Workspace, free_port, running_stack, wait_for
from support.pipeline import (
    WorkerProcess,
    assert_applied_once_in_order,
    number_field,
    wait_until_succeeded,
    worker_task,
    write_async,
)

WRITES = 30


@asynccontextmanager
async def _workspace_locked(settings: Settings, workspace: Workspace) -> AsyncIterator[asyncpg.Connection[Any]]:
    """Hold the workspace's apply lock (as a worker's batch does) until the block ends, or until the caller rolls
    back the transaction it is in."""
    blocker = await asyncpg.connect(settings.database_url)
    transaction = blocker.transaction()
    await transaction.start()
    await blocker.execute("SELECT pg_advisory_xact_lock($1)", workspace.id)
    try:
        yield blocker
    finally:
        if not blocker.is_closed():
            await transaction.rollback()
            await blocker.close()


async def _statuses(db: asyncpg.Connection[Any], operations: list[uuid.UUID]) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM operations WHERE id = ANY($1::uuid[]) GROUP BY 1",
                          operations)
    return {r["status"]: r["n"] for r in rows}


async def _exits(process: subprocess.Popen[bytes], within: float) -> int:
    deadline = time.monotonic() + within
    while process.poll() is None:
        assert time.monotonic() < deadline, f"pid {process.pid} still running after {within} s"
        await asyncio.sleep(0.05)
    return process.returncode


async def test_a_worker_told_to_stop_finishes_its_batch_and_gives_back_the_rest(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector,
        tmp_path: Path) -> None:
    async with running_stack(settings, worker=False) as stack:
        field_id = await number_field(stack, workspace)
        worker = WorkerProcess(settings, tmp_path / "worker.log", shutdown_timeout=30)
        try:
            await worker.started()
            async with _workspace_locked(settings, workspace) as blocker:
                written = [await write_async(stack, workspace, field_id, 1, value) for value in range(WRITES)]
                await asyncio.sleep(1.0)  # the first write's batch waits for the lock; the others wait behind it
                worker.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(1.0)
                assert worker.process.poll() is None, worker.output()  # it waits for its batch to end
                await blocker.close()  # the lock goes: the batch commits
                assert await _exits(worker.process, 10) == 0, worker.output()
            assert "worker drained" in worker.output()
            done = await _statuses(db, written)
            assert 1 <= done.get("succeeded", 0) < WRITES, done  # its batch committed; the rest was given back
        finally:
            worker.kill()
        async with worker_task(settings):
            await wait_until_succeeded(db, written)
        await assert_applied_once_in_order(db, events, field_id, [1], WRITES)


async def test_a_worker_stops_within_its_shutdown_timeout_even_if_its_batch_cannot_end(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector,
        tmp_path: Path) -> None:
    async with running_stack(settings, worker=False) as stack:
        field_id = await number_field(stack, workspace)
        worker = WorkerProcess(settings, tmp_path / "worker.log", shutdown_timeout=2)
        try:
            await worker.started()
            async with _workspace_locked(settings, workspace):
                written = [await write_async(stack, workspace, field_id, 1, value) for value in range(WRITES)]
                await asyncio.sleep(1.0)
                began = time.monotonic()
                worker.process.send_signal(signal.SIGTERM)
                assert await _exits(worker.process, 8) == 0, worker.output()
                assert time.monotonic() - began >= 1.9
                assert "did not drain in time" in worker.output()
                assert await _statuses(db, written) == {"pending": WRITES}
        finally:
            worker.kill()
        async with worker_task(settings):  # nothing was lost, nothing is applied twice
            await wait_until_succeeded(db, written)
        await assert_applied_once_in_order(db, events, field_id, [1], WRITES)


def _gateway(settings: Settings, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
               CFV_HTTP_PORT=str(settings.http_port), CFV_COMMAND_SHARDS=str(settings.command_shards),
               CFV_DB_POOL_SIZE="2", CFV_METRICS_PORT=str(metrics_port), CFV_SHUTDOWN_TIMEOUT="20",
               CFV_WRITE_TIMEOUT="20")
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cfv", "gateway"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def test_the_gateway_told_to_stop_turns_unready_and_answers_the_requests_in_flight(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    metrics_port = free_port()
    log = tmp_path / "gateway.log"
    gateway = _gateway(settings, log, metrics_port)
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with aiohttp.ClientSession(headers=workspace.headers) as http, worker_task(settings):
            async def serving() -> bool:
                assert gateway.poll() is None, log.read_text()
                try:
                    async with http.get(base + "/readyz") as answer:
                        return answer.status == 200
                except aiohttp.ClientConnectionError:
                    return False
            await wait_for(serving, 30, "the gateway to serve")
            async with http.post(base + "/api/v1/custom_fields", json={"custom_field": {
                    "name": "Points", "subject_type": "Story", "value_type": "number"}}) as answer:
                assert answer.status == 201
                field_id = int(next(iter((await answer.json())["custom_fields"])))

            async def write(value: int) -> tuple[int, Any]:
                async with http.post(base + "/api/v1/custom_field_values", json={"custom_field_value": {
                        "subject_type": "Story", "subject_id": 1, "custom_field_id": field_id,
                        "value": value}}) as answer:
                    return answer.status, await answer.json()

            async with _workspace_locked(settings, workspace) as blocker:
                in_flight = [asyncio.create_task(write(value)) for value in range(5)]
                await asyncio.sleep(1.0)  # published, and waiting for their outcomes
                gateway.send_signal(signal.SIGTERM)

                async def draining() -> bool:
                    async with http.get(f"http://127.0.0.1:{metrics_port}/readyz") as answer:
                        return answer.status == 503 and (await answer.json())["status"] == "draining"
                await wait_for(draining, 5, "the gateway to say it is draining")
                with pytest.raises(aiohttp.ClientConnectionError):  # no new connections
                    async with aiohttp.ClientSession() as fresh, fresh.get(base + "/livez"):
                        pass
                assert not any(task.done() for task in in_flight)
                await blocker.close()
                answers = await asyncio.gather(*in_flight)
            assert [status for status, _ in answers] == [200] * 5, answers
            assert await _exits(gateway, 10) == 0, log.read_text()
            assert await db.fetchval("SELECT count(*) FROM value_versions WHERE custom_field_id = $1", field_id) == 5
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()


async def test_the_relay_told_to_stop_finishes_its_round_and_stops(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], events: EventCollector) -> None:
    stop = asyncio.Event()
    async with running_stack(settings, relay=False) as stack:
        field_id = await number_field(stack, workspace)
        relay = asyncio.create_task(run_relay(settings, stop=stop))
        for value in range(20):
            await write_async(stack, workspace, field_id, 1, value)
        await events.wait_for_count(20)
        stop.set()
        await asyncio.wait_for(relay, 5)  # returns by itself, not cancelled
        head = await db.fetchval("SELECT max(position) FROM events WHERE workspace_id = $1", workspace.id)
        assert await db.fetchval("SELECT position FROM relay_cursors WHERE workspace_id = $1", workspace.id) == head
        await assert_applied_once_in_order(db, events, field_id, [1], 20)
