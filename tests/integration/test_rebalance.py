"""Shards spread over workers: with two workers each is RabbitMQ's active consumer of half the shards, within
seconds of the second joining; when one dies the other takes all of them, and a worker joining again takes its
half back. Through every handover, under a steady stream of writes to many workspaces (so every shard is busy),
each key's writes are applied exactly once, in the order written, and announced in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
from cfv.broker import topology
from cfv.settings import Settings
from support import RABBIT_API, EventCollector, Stack, Workspace, create_workspace, running_stack, wait_for
from support.pipeline import (
    WorkerProcess,
    assert_applied_once_in_order,
    number_field,
    wait_until_succeeded,
    write_async,
)
from yarl import URL

WORKSPACES = 24  # spread by hash over 4 shards: every shard has some (each lacks all with odds of 0.1 %)


async def active_consumers(settings: Settings) -> dict[int, str | None]:
    """For each shard queue, the name of the connection RabbitMQ made its active consumer (None: none)."""
    vhost = quote(URL(settings.amqp_url).path[1:], safe="")
    found: dict[int, str | None] = {}
    async with aiohttp.ClientSession() as http:
        for n in range(settings.command_shards):
            async with http.get(f"{RABBIT_API}/queues/{vhost}/{topology.shard_queue(n)}") as answer:
                queue = await answer.json()
            active = [c for c in queue.get("consumer_details", [])
                      if c.get("activity_status") == "single_active"]  # ("active": false when its prefetch is full)
            found[n] = None
            if active and not isinstance(active[0].get("channel_details"), dict):
                found[n] = "(not known yet)"  # the management plugin has no details of a channel just opened
            elif active:
                connection = quote(active[0]["channel_details"]["connection_name"], safe="")
                async with http.get(f"{RABBIT_API}/connections/{connection}") as answer:
                    found[n] = (await answer.json())["client_properties"]["connection_name"]
    return found


async def shares(settings: Settings) -> dict[str | None, int]:
    """How many shards each connection is active on."""
    counts: dict[str | None, int] = {}
    for name in (await active_consumers(settings)).values():
        counts[name] = counts.get(name, 0) + 1
    return counts


def worker_name(worker: WorkerProcess) -> str:
    """The connection name a worker process gave itself (``cfv-worker/<id>``), from its log."""
    for line in worker.output().splitlines():
        if "worker started" in line and "worker_id=" in line:
            return "cfv-worker/" + line.split("worker_id=")[1].split()[0]
    raise AssertionError(f"no worker id in the log of {worker.pid}:\n{worker.output()}")


async def start_worker(workers: list[WorkerProcess], settings: Settings, log: Path, **overrides: Any) -> str:
    """Start a worker process (appended to ``workers``, for the caller to kill); its connection name."""
    workers.append(WorkerProcess(settings, log, **overrides))
    await workers[-1].started()
    return worker_name(workers[-1])


async def wait_for_shares(settings: Settings, expected: dict[str, int], timeout: float = 20.0) -> None:
    """Wait until the shards are spread as ``expected`` (connection name: shard count)."""
    last: dict[str | None, int] = {}

    async def spread() -> bool:
        nonlocal last
        last = await shares(settings)
        return last == expected
    try:
        await wait_for(spread, timeout, f"shards spread as {expected}")
    except AssertionError:
        raise AssertionError(f"shards spread as {last}, not {expected}") from None


async def test_shards_spread_over_the_live_workers_and_follow_them_keeping_each_key_in_order(
        settings: Settings, db: asyncpg.Connection[Any], events: EventCollector, tmp_path: Path) -> None:
    workspaces = [await create_workspace(db, f"ws{n}") for n in range(WORKSPACES)]
    overrides: dict[str, Any] = {"rebalance_every": 0.3, "log_level": "DEBUG", "worker_prefetch": 64}
    workers: list[WorkerProcess] = []
    stop = asyncio.Event()
    written: dict[int, list[uuid.UUID]] = {}

    async def stream(stack: Stack, workspace: Workspace, field_id: int) -> None:
        # One subject per workspace, written 0, 1, 2, ... (each 202 awaited) until told to stop.
        operations = written.setdefault(field_id, [])
        while not stop.is_set():
            operations.append(await write_async(stack, workspace, field_id, 1, len(operations)))
            await asyncio.sleep(0.01)

    try:
        a = await start_worker(workers, settings, tmp_path / "worker-a.log", **overrides)
        async with running_stack(settings, worker=False) as stack:
            fields = [await number_field(stack, workspace) for workspace in workspaces]
            streams = [asyncio.create_task(stream(stack, w, f)) for w, f in zip(workspaces, fields, strict=True)]
            await wait_for_shares(settings, {a: 4})

            b = await start_worker(workers, settings, tmp_path / "worker-b.log", **overrides)
            joined = time.monotonic()
            await wait_for_shares(settings, {a: 2, b: 2})
            # Within a few looks (0.3 s apart here) and the management plugin's lag (it shows consumers late).
            assert time.monotonic() - joined < 8
            await asyncio.sleep(1)  # both apply for a while

            workers[1].kill()  # kill -9, mid-stream: its shards fail over to the waiting consumer, a
            await wait_for_shares(settings, {a: 4})

            c = await start_worker(workers, settings, tmp_path / "worker-c.log", **overrides)
            await wait_for_shares(settings, {a: 2, c: 2})
            await asyncio.sleep(1)

            stop.set()
            await asyncio.gather(*streams)
            operations = [op for ops in written.values() for op in ops]
            await wait_until_succeeded(db, operations, timeout=60)
            for field_id, ops in written.items():
                assert len(ops) > 20, "each stream ran through the handovers"
                await assert_applied_once_in_order(db, events, field_id, [1], len(ops))
        for worker in (workers[0], workers[2]):
            assert worker.process.poll() is None, f"worker {worker.pid} died:\n{worker.output()}"
            assert "handed a shard over" in worker.output() or worker is workers[2]
        for worker in workers:
            assert "batch applied" in worker.output(), f"worker {worker.pid} applied nothing"
    finally:
        stop.set()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.kill()


async def test_a_handover_while_the_worker_holds_a_full_prefetch_keeps_each_key_in_order(
        settings: Settings, db: asyncpg.Connection[Any], events: EventCollector, tmp_path: Path) -> None:
    """Worker a holds hundreds of messages of every shard, unapplied, its batch waiting for the workspaces'
    locks, when b joins: a hands over only once its batch committed, and what it held goes back to the queues
    first in line, so b applies it in order after a's batch."""
    workspaces = [await create_workspace(db, f"ws{n}") for n in range(WORKSPACES)]
    overrides: dict[str, Any] = {"rebalance_every": 0.3, "worker_prefetch": 256}
    workers: list[WorkerProcess] = []
    per_key = 40
    try:
        a = await start_worker(workers, settings, tmp_path / "worker-a.log", **overrides)
        async with running_stack(settings, worker=False) as stack:
            fields = [await number_field(stack, workspace) for workspace in workspaces]
            blocker = await asyncpg.connect(settings.database_url)
            try:
                async with blocker.transaction():
                    for workspace in workspaces:
                        await blocker.execute("SELECT pg_advisory_xact_lock($1)", workspace.id)

                    async def stream(workspace: Workspace, field_id: int) -> list[uuid.UUID]:
                        return [await write_async(stack, workspace, field_id, 1, value) for value in range(per_key)]
                    written = await asyncio.gather(*(stream(w, f) for w, f in zip(workspaces, fields, strict=True)))
                    b = await start_worker(workers, settings, tmp_path / "worker-b.log", **overrides)
                    await asyncio.sleep(1.5)  # a has seen b, and waits for its batch to end to hand over ...
                    await wait_for_shares(settings, {a: 4})  # ... (the management plugin's view may lag)
            finally:
                await blocker.close()
            await wait_for_shares(settings, {a: 2, b: 2})
            await wait_until_succeeded(db, [op for ops in written for op in ops], timeout=60)
            for field_id in fields:
                await assert_applied_once_in_order(db, events, field_id, [1], per_key)
        assert "handed a shard over" in workers[0].output()
    finally:
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.kill()
