"""Helpers for the write pipeline's guarantee and fault tests: worker processes, raw command messages,
ordered write streams, and the checks that every write was applied exactly once, in order, and announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
from cfv.broker import policies, topology
from cfv.processes import run_worker
from cfv.settings import Settings
from cfv_schemas.signing import sign_message

from support import EventCollector, Stack, Workspace, wait_for

VALUES = "/api/v1/custom_field_values"


# --- worker processes ---------------------------------------------------------------------------------


class WorkerProcess:
    """``python -m cfv worker`` in its own process, logging to a file."""

    def __init__(self, settings: Settings, log: Path, **overrides: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
        env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
                   CFV_COMMAND_SHARDS=str(settings.command_shards),
                   CFV_DELIVERY_LIMIT=str(settings.delivery_limit), CFV_DB_POOL_SIZE="2",
                   CFV_RABBITMQ_MANAGEMENT_URL=settings.rabbitmq_management_url,
                   CFV_LOG_LEVEL="INFO", CFV_METRICS_PORT="0")
        env.update({f"CFV_{k.upper()}": str(v) for k, v in overrides.items()})
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cfv", "worker"], env=env, cwd=log.parent,
            stdout=self._log_file, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no goodbye to the broker or the database."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log_file.close()

    def output(self) -> str:
        """What the process logged so far."""
        return self.log.read_text(errors="replace")

    async def started(self, timeout: float = 20.0) -> None:
        """Wait until the worker consumes its queues (it logs so once its consumers are registered)."""
        async def consuming() -> bool:
            assert self.process.poll() is None, f"worker {self.pid} exited:\n{self.output()}"
            return "worker started" in self.output()
        await wait_for(consuming, timeout, f"worker {self.pid} to start")


@contextlib.contextmanager
def worker_processes(settings: Settings, directory: Path, count: int,
                     **overrides: Any) -> Iterator[list[WorkerProcess]]:
    """Start ``count`` worker processes; kill them (all) when the block ends."""
    workers: list[WorkerProcess] = []
    try:
        for n in range(count):
            workers.append(WorkerProcess(settings, directory / f"worker-{n}.log", **overrides))
        yield workers
    finally:
        for worker in workers:
            worker.kill()


# --- the broker ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def broker_channel(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel with publisher confirms, on a vhost whose cfv topology (and policy) is declared."""
    await policies.ensure(settings)
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, shards=settings.command_shards)
        yield channel
    finally:
        await connection.close()


async def publish_raw(channel: aio_pika.abc.AbstractChannel, api_key: str | None, body: bytes, routing_key: str,
                      message_id: str | None = None, **properties: Any) -> None:
    """Publish a command message to ``cfv.commands`` as the gateway does (persistent, confirmed), signed with
    ``api_key`` (None: unsigned)."""
    exchange = await channel.get_exchange(topology.COMMANDS_EXCHANGE)
    headers = sign_message(body, api_key) if api_key is not None else {}
    await exchange.publish(aio_pika.Message(body, content_type="application/json", message_id=message_id,
                                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=headers,
                                            **properties),
                           routing_key=routing_key, mandatory=True)


def command(workspace_id: int, field_id: int, subject_id: int, value: Any, *, command_id: uuid.UUID | None = None,
            actor: str = "key:test", subject_type: str = "Story") -> dict[str, Any]:
    """A ``write_values`` command of one item, in its wire form."""
    return {"type": "write_values", "id": str(command_id or uuid.uuid4()), "workspace_id": workspace_id,
            "actor": actor, "accepted_at": datetime.now(UTC).isoformat(),
            "items": [{"subject_type": subject_type, "subject_id": subject_id, "custom_field_id": field_id,
                       "value": value}]}


def envelope(*commands: dict[str, Any], v: int = 1) -> bytes:
    """A command message body."""
    return orjson.dumps({"v": v, "commands": list(commands)})


async def number_field(stack: Stack, workspace: Workspace) -> int:
    """Define a number field on stories; return its id."""
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    return int(field["id"])


# --- the database -------------------------------------------------------------------------------------


async def status_counts(db: asyncpg.Connection[Any]) -> dict[str, int]:
    """How many operations are in each status."""
    return {r["status"]: r["n"] for r in await db.fetch("SELECT status, count(*) AS n FROM operations GROUP BY 1")}


async def wait_until_succeeded(db: asyncpg.Connection[Any], operation_ids: list[uuid.UUID],
                               timeout: float = 30.0) -> None:
    """Wait until every one of ``operation_ids`` succeeded (failing at once if one failed)."""
    async def done() -> bool:
        rows = await db.fetch("SELECT status, count(*) AS n FROM operations WHERE id = ANY($1::uuid[]) GROUP BY 1",
                              operation_ids)
        counts = {r["status"]: r["n"] for r in rows}
        assert not counts.get("failed"), await db.fetch(
            "SELECT outcome FROM operations WHERE id = ANY($1::uuid[]) AND status = 'failed' LIMIT 3", operation_ids)
        return bool(counts.get("succeeded", 0) == len(operation_ids))
    await wait_for(done, timeout, f"{len(operation_ids)} operations to succeed")


# --- ordered write streams ----------------------------------------------------------------------------


async def write_async(stack: Stack, workspace: Workspace, field_id: int, subject_id: int, value: Any
                      ) -> uuid.UUID:
    """POST one value with ``Prefer: respond-async``; return its operation id (the answer must be 202)."""
    status, body, headers = await stack.request(
        "POST", VALUES, workspace, headers={"Prefer": "respond-async"},
        json={"custom_field_value": {"subject_type": "Story", "subject_id": subject_id,
                                     "custom_field_id": field_id, "value": value}})
    assert status == 202, body
    assert headers.get("Preference-Applied") == "respond-async"
    return uuid.UUID(body["operation"]["id"])


async def write_streams(stack: Stack, workspace: Workspace, field_id: int, subjects: list[int], count: int,
                        start: int = 0) -> list[uuid.UUID]:
    """One client task per subject, each writing start..start+count-1 to it in order (each 202 awaited before
    the next).
    """
    async def stream(subject_id: int) -> list[uuid.UUID]:
        return [await write_async(stack, workspace, field_id, subject_id, value)
                for value in range(start, start + count)]
    streams = await asyncio.gather(*(stream(s) for s in subjects))
    return [op for ops in streams for op in ops]


async def assert_applied_once_in_order(db: asyncpg.Connection[Any], events: EventCollector, field_id: int,
                                       subjects: list[int], count: int, *, timeout: float = 30.0) -> None:
    """Each subject's field holds ``count`` versions, seq 1..count with value seq-1 (the order written), ends at
    ``count - 1``, and was announced by ``count`` events with gapless sequences 1..count, in order.
    """
    versions: dict[str, list[tuple[int, Any]]] = {}
    for r in await db.fetch("SELECT subject_id, seq, value FROM value_versions WHERE custom_field_id = $1 "
                            "ORDER BY subject_id, seq", field_id):
        versions.setdefault(r["subject_id"], []).append((r["seq"], r["value"]))
    assert sorted(versions) == sorted(str(s) for s in subjects)
    for subject, history in versions.items():
        assert history == [(seq, seq - 1) for seq in range(1, count + 1)], f"subject {subject}: {history}"

    current = {r["subject_id"]: (r["seq"], r["value"]) for r in await db.fetch(
        "SELECT subject_id, seq, value FROM current_values WHERE custom_field_id = $1", field_id)}
    assert current == {str(s): (count, count - 1) for s in subjects}

    expected = len(subjects) * count

    def unique_events() -> dict[str, dict[str, Any]]:
        first: dict[str, dict[str, Any]] = {}
        for event in events.events:
            if event["data"]["custom_field_id"] == field_id:
                seen = first.setdefault(event["id"], event)
                assert seen == event, f"two different events share the id {event['id']}"
        return first

    async def all_announced() -> bool:
        return len(unique_events()) >= expected
    await wait_for(all_announced, timeout, f"{expected} events")
    announced: dict[str, list[tuple[int, Any]]] = {}
    for event in unique_events().values():  # arrival order of each event's first copy
        data = event["data"]
        announced.setdefault(data["subject_id"], []).append((data["sequence"], data["after"]["value"]))
    assert sorted(announced) == sorted(str(s) for s in subjects)
    for subject, sequence in announced.items():
        assert sequence == [(seq, seq - 1) for seq in range(1, count + 1)], f"events of {subject}: {sequence}"


@contextlib.asynccontextmanager
async def worker_task(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """A worker running in this process (as ``running_stack`` runs one) until the block ends."""
    task = asyncio.create_task(run_worker(settings))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)
