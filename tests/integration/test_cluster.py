"""Past one broker: cfv on a three-node RabbitMQ cluster (``bin/rabbitmq-cluster``) loses the node leading the
command queue, then the node its relay publishes events through, under load, and loses no acknowledged write:
none lost, applied twice or out of order, every event published; the gateway answers 503, never 500, while it
has no broker (issue 14, *Past one broker*)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import orjson
import pytest
from cfv.broker import topology
from cfv.broker.connection import amqp_urls, connect
from cfv.settings import Settings
from support import Stack, Workspace, add_vhost, running_stack, wait_for
from support.pipeline import VALUES, number_field

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "bin" / "rabbitmq-cluster"
API = "http://guest:guest@127.0.0.1:15681/api"


@pytest.fixture(scope="session")
def cluster() -> list[str]:
    """The three nodes running and clustered; their AMQP URLs."""
    subprocess.run([CLUSTER, "start"], check=True, timeout=300, capture_output=True)  # noqa: S603
    return amqp_urls(subprocess.run([CLUSTER, "urls"], check=True, capture_output=True,  # noqa: S603
                                    text=True).stdout)


@pytest.fixture
async def cluster_settings(settings: Settings, cluster: list[str]) -> AsyncIterator[Settings]:
    """This test's settings, on a fresh virtual host of the cluster, with one command queue."""
    vhost = f"cfv_cluster_{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as http:
        await add_vhost(http, API, vhost)
        # The cluster's own management APIs (found from its nodes' AMQP ports), not the test broker's.
        yield settings.model_copy(update={"amqp_url": ",".join(url + vhost for url in cluster),
                                          "rabbitmq_management_url": "", "command_shards": 1,
                                          "rate_limit_writes": 10**9})
        for node in "abc":
            await _revive(node)
        async with http.delete(f"{API}/vhosts/{vhost}"):
            pass


async def _revive(node: str) -> None:
    await asyncio.to_thread(subprocess.run, [CLUSTER, "revive", node], capture_output=True, timeout=180)


async def _kill(node: str) -> None:
    await asyncio.to_thread(subprocess.run, [CLUSTER, "kill", node], check=True, capture_output=True, timeout=120)


async def _api(path: str) -> Any:
    """GET from the management API of whichever node answers."""
    for port in (15681, 15682, 15683):
        with contextlib.suppress(aiohttp.ClientError):
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://guest:guest@127.0.0.1:{port}/api{path}") as answer:
                if answer.status == 200:
                    return await answer.json()
    raise AssertionError(f"no node answered {path}")


def _short(node: str) -> str:
    return node.split("@")[0].removeprefix("cfv-")


async def _leader_of_commands(settings: Settings) -> str:
    vhost = quote(amqp_urls(settings.amqp_url)[0].rsplit("/", 1)[1], safe="")
    queue = await _api(f"/queues/{vhost}/{quote(topology.shard_queue(0), safe='')}")
    return _short(queue["leader"])


async def _node_of_connection(name: str) -> str:
    for connection in await _api("/connections"):
        if connection.get("client_properties", {}).get("connection_name") == name:
            return _short(connection["node"])
    raise AssertionError(f"no connection named {name}")


class Streams:
    """Subjects written in order, one stream each, every other write waiting for its outcome."""

    def __init__(self, stack: Stack, workspace: Workspace, field_id: int, subjects: int) -> None:
        self.stack, self.workspace, self.field_id = stack, workspace, field_id
        self.subjects = list(range(1, subjects + 1))
        self.answers: dict[tuple[int, int], int] = {}
        self.applied: list[tuple[float, int, int]] = []  # (sent at, subject, value) of writes answered 200
        self.operations: list[uuid.UUID] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._stream(s) for s in self.subjects))

    def stop(self) -> None:
        self._stop.set()

    async def _stream(self, subject: int) -> None:
        value = 0
        while not self._stop.is_set():
            value += 1
            headers = {} if value % 2 else {"Prefer": "respond-async"}
            sent_at = time.monotonic()
            try:
                status, body, _ = await asyncio.wait_for(self.stack.request(
                    "POST", VALUES, self.workspace, headers=headers, json={
                        "custom_field_value": {"subject_type": "Story", "subject_id": subject,
                                               "custom_field_id": self.field_id, "value": value}}), 30)
            except aiohttp.ClientError:
                status, body = 0, None
            except TimeoutError:  # no answer in 30 s (the gateway's own timeouts are 5 and 10 s)
                status, body = -1, None
            self.answers[subject, value] = status
            if status == 200:
                self.applied.append((sent_at, subject, value))
            if status == 202:
                self.operations.append(uuid.UUID(body["operation"]["id"]))
            if status == 503:
                await asyncio.sleep(0.1)


async def test_losing_the_command_queues_leader_then_the_relays_node_loses_no_write(
        cluster_settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    settings = cluster_settings
    received: list[dict[str, Any]] = []
    events = await connect(amqp_urls(settings.amqp_url), name="test-events")
    try:
        channel = await events.channel()
        exchange = await channel.declare_exchange(topology.EVENTS_EXCHANGE, "topic", durable=True)
        queue = await channel.declare_queue("test.events", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, routing_key="*.*.*.*")  # value events only

        async def on_event(message: Any) -> None:
            received.append(orjson.loads(message.body))
            await message.ack()
        await queue.consume(on_event)

        async with running_stack(settings) as stack:
            field_id = await number_field(stack, workspace)
            streams = Streams(stack, workspace, field_id, 6)
            writing = asyncio.create_task(streams.run())
            recoveries = []
            try:
                for role in ("the command queue's leader", "the relay's node"):
                    await asyncio.sleep(2)
                    if role == "the relay's node":
                        node = await _node_of_connection("cfv-relay")
                    else:
                        node = await _leader_of_commands(settings)
                    killed_at = time.monotonic()
                    await _kill(node)

                    # With the node still down: a write sent after it went is applied, and announced.
                    async def served(killed_at: float = killed_at) -> bool:
                        after = [(s, v) for at, s, v in streams.applied if at > killed_at]
                        return bool(after) and any(
                            (str(s), v) in {(e["data"]["subject_id"], e["data"]["after"]["value"]) for e in received}
                            for s, v in after)
                    await wait_for(served, 30, f"a write applied and announced without {role}")
                    recoveries.append((role, node, round(time.monotonic() - killed_at, 2)))
                    await _revive(node)
            finally:
                streams.stop()
                await writing

            async def settled() -> bool:
                return bool(await db.fetchval("SELECT count(*) FROM operations WHERE id = ANY($1::uuid[]) "
                                              "AND status = 'pending'", streams.operations) == 0)
            await wait_for(settled, 60, "every acknowledged write to be applied")
            statuses = set(streams.answers.values())
            assert statuses <= {200, 202, 503, 0}, statuses  # never a 500, never a request left unanswered (-1)
            assert sum(s in (200, 202) for s in streams.answers.values()) > 50

            history: dict[str, list[int]] = {}
            for row in await db.fetch("SELECT subject_id, seq, value FROM value_versions WHERE custom_field_id = $1 "
                                      "ORDER BY subject_id, seq", field_id):
                history.setdefault(row["subject_id"], []).append(row["value"])
            for subject in streams.subjects:
                values = history.get(str(subject), [])
                assert values == sorted(values) and len(values) == len(set(values)), (subject, values)
                acked = {v for (s, v), status in streams.answers.items() if s == subject and status in (200, 202)}
                assert acked <= set(values), (subject, sorted(acked - set(values)))

            expected = {(str(s), seq + 1) for s in streams.subjects for seq in range(len(history.get(str(s), [])))}

            async def announced() -> bool:
                return expected <= {(e["data"]["subject_id"], e["data"]["sequence"]) for e in received
                                    if e["data"]["custom_field_id"] == field_id}
            await wait_for(announced, 60, "every change to be announced")
            print("recovery (seconds until a write sent after the kill was applied and announced):", recoveries,
                  "503 answers:", sum(status == 503 for status in streams.answers.values()))
    finally:
        await events.close()
