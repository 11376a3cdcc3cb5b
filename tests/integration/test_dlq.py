"""The operator's dead-letter tools (issue 11): ``cfv dlq list|show`` say what waits in ``cfv.commands.dead`` and
why (RabbitMQ's death headers, and what cfv recorded of its operations); ``cfv dlq replay`` applies a message
for real (its failed operations pending again), ``cfv dlq purge --yes`` empties the queue."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import aio_pika
import asyncpg
from cfv.broker import topology
from cfv.settings import Settings
from support import Workspace, running_stack, wait_for
from support.pipeline import broker_channel, command, envelope, number_field, publish_raw, worker_task


def _cfv(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url, CFV_LOG_LEVEL="WARNING")
    return subprocess.run([sys.executable, "-m", "cfv", *args], env=env, capture_output=True,  # noqa: S603
                          text=True, timeout=60, check=False)


async def _dead(channel: aio_pika.abc.AbstractChannel) -> int:
    underlay = await channel.get_underlay_channel()
    return int((await underlay.queue_declare(topology.DEAD_LETTER_QUEUE, passive=True)).message_count or 0)


async def _deliver_until_dead(settings: Settings, channel: aio_pika.abc.AbstractChannel) -> None:
    """Take the message back from its shard queue until RabbitMQ's delivery limit dead-letters it (as a worker
    crashing on it would, faster)."""
    connection = await aio_pika.connect(settings.amqp_url)  # consumers of its own (no basic.get on these queues)
    refuser = await connection.channel()

    async def give_back(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.nack(requeue=True)

    try:
        for n in range(settings.command_shards):
            queue = await refuser.declare_queue(topology.shard_queue(n), passive=True)
            await queue.consume(give_back)

        async def dead() -> bool:
            return await _dead(channel) == 1
        await wait_for(dead, 20, "the message to be dead-lettered")
    finally:
        await connection.close()


async def test_a_dead_letter_is_listed_with_why_replayed_and_applied(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    limited = settings.model_copy(update={"delivery_limit": 2})
    operation = uuid.uuid4()
    async with running_stack(limited, worker=False) as stack, broker_channel(limited) as channel:
        field_id = await number_field(stack, workspace)
        await publish_raw(channel, workspace.key, envelope(command(workspace.id, field_id, 5, 42,
                                                                  command_id=operation)), str(workspace.id))
        await _deliver_until_dead(limited, channel)
        async with worker_task(limited):  # it settles what RabbitMQ dead-lettered itself: the operation fails

            async def failed() -> bool:
                return bool(await db.fetchval("SELECT status FROM operations WHERE id = $1", operation) == "failed")
            await wait_for(failed, 20, "the dead-lettered operation to be failed")

            listed = _cfv(limited, "dlq", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
            assert letter["number"] == 1 and letter["reason"] == "delivery_limit"
            assert letter["routing_key"] == str(workspace.id) and letter["signed"] is True
            assert letter["operations"] == [str(operation)]
            assert any("dead-lettered the message (delivery_limit" in why for why in letter["why"]), letter
            table = _cfv(limited, "dlq", "list")
            assert "delivery_limit" in table.stdout and "1 message(s)" in table.stdout, table

            shown = _cfv(limited, "dlq", "show", letter["message_id"])
            assert shown.returncode == 0, shown.stderr
            detail = json.loads(shown.stdout)
            assert detail["body"]["commands"][0]["id"] == str(operation)
            assert "cfv-signature" in detail["headers"]
            assert _cfv(limited, "dlq", "show", "99").returncode != 0

            replayed = _cfv(limited, "dlq", "replay", "1")
            assert replayed.returncode == 0, replayed.stderr
            assert replayed.stdout.strip() == "replayed 1 message(s)"

            async def applied() -> bool:
                return bool(await db.fetchval("SELECT status FROM operations WHERE id = $1", operation)
                            == "succeeded")
            await wait_for(applied, 20, "the replayed command to be applied")
            assert await db.fetchval("SELECT value FROM current_values WHERE custom_field_id = $1 AND "
                                     "subject_id = '5'", field_id) == 42
            assert await _dead(channel) == 0


async def test_purge_needs_yes_and_empties_the_queue(settings: Settings, workspace: Workspace) -> None:
    async with running_stack(settings) as stack, broker_channel(settings) as channel:
        await number_field(stack, workspace)
        for _ in range(2):
            await publish_raw(channel, None, b"not json", str(workspace.id))

        async def refused() -> bool:
            return await _dead(channel) == 2
        await wait_for(refused, 20, "the worker to refuse both")
        listed = _cfv(settings, "dlq", "list", "--json")
        assert [json.loads(line)["reason"] for line in listed.stdout.splitlines()] == ["rejected", "rejected"]
        assert await _dead(channel) == 2  # reading gives every message back

        refused_purge = _cfv(settings, "dlq", "purge")
        assert refused_purge.returncode == 2 and "--yes" in refused_purge.stderr
        assert await _dead(channel) == 2
        purged = _cfv(settings, "dlq", "purge", "--yes")
        assert purged.returncode == 0 and purged.stdout.strip() == "purged 2 message(s)", purged
        await asyncio.sleep(0.2)
        assert await _dead(channel) == 0
