"""The worker process: consume command messages, apply them in batches, ack after commit.

Deliveries from every shard queue this worker is the active consumer of arrive in one inbox, in delivery
order. The worker takes what is ready (up to ``worker_batch_max`` messages), applies it in one transaction,
and acks it only after the commit. A message that cannot be a command (bad JSON, unknown version, wrong
routing key) is refused at once to the dead-letter queue and its operations marked failed. When Postgres
is unreachable, the batch is retried until it commits; its messages stay unacked meanwhile, so a worker
killed at any point loses nothing: the broker redelivers, and completed commands are recognised.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from cfv_schemas.commands import Command, CommandEnvelope
from pydantic import ValidationError

from cfv.broker import topology
from cfv.faults import TRANSIENT_ERRORS, Backoff
from cfv.settings import Settings
from cfv.worker.apply import NamedOperation, apply_batch, fail_operations

log = structlog.get_logger("cfv.worker")

class Poison(Exception):
    """A message that can never be applied."""


class Worker:
    """Consumes ``cfv.commands.*`` and applies commands to Postgres."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool[Any], connection: AbstractRobustConnection) -> None:
        self._settings = settings
        self._pool = pool
        self._connection = connection
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.applied_commands = 0

    async def run(self) -> None:
        """Consume and apply until cancelled."""
        await self._subscribe()
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self._settings.worker_batch_max and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            await self._process(batch)

    async def _subscribe(self) -> None:
        """Declare the topology and consume every shard queue, retrying while the broker is not ready.

        A quorum queue declared a moment ago may refuse consumers until its leader is elected.
        """
        backoff = Backoff(first=0.2)
        while True:
            channel = await self._connection.channel()
            try:
                await channel.set_qos(prefetch_count=self._settings.worker_prefetch)
                declared = await topology.declare(
                    channel, shards=self._settings.command_shards, delivery_limit=self._settings.delivery_limit
                )
                for queue in declared.shard_queues:
                    await queue.consume(self._receive)
            except TRANSIENT_ERRORS + (AMQPError, RuntimeError) as error:  # RuntimeError: a closed channel
                log.warning("cannot subscribe yet, retrying", error=repr(error), retry_in=backoff.delay)
                with contextlib.suppress(Exception):
                    await channel.close()
                await backoff.pause()
                continue
            log.info("worker started", shards=len(declared.shard_queues))
            return

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        # Synchronous up to the put, so the inbox keeps the order of delivery.
        self._inbox.put_nowait(message)

    async def _process(self, messages: list[AbstractIncomingMessage]) -> None:
        accepted: list[AbstractIncomingMessage] = []
        commands: list[Command] = []
        for message in messages:
            try:
                decoded = decode(message)
            except Poison as error:
                await self._refuse(message, str(error))
                continue
            accepted.append(message)
            commands.extend(decoded)
        if commands:
            await self._apply(accepted, commands)
        await _ack(accepted)

    async def _apply(self, messages: list[AbstractIncomingMessage], commands: list[Command]) -> None:
        backoff = Backoff()
        while True:
            try:
                async with self._pool.acquire() as connection:
                    await apply_batch(connection, commands)
                self.applied_commands += len(commands)
                return
            except TRANSIENT_ERRORS as error:
                log.warning("apply failed, retrying", error=repr(error), retry_in=backoff.delay,
                            commands=len(commands))
                await backoff.pause()
            except Exception as error:  # refused by Postgres, or breaking our code (e.g. a number orjson cannot encode)
                if len(messages) == 1:
                    log.error("command failed in the database", error=repr(error))
                    await self._refuse(messages[0], "the command could not be applied because of an internal error;"
                                       " it is kept in the dead-letter queue for the operator", internal=True)
                    messages.clear()
                    return
                # One message broke the whole batch: apply message by message to find it; the others commit.
                log.warning("batch failed, applying message by message", error=repr(error))
                for message in list(messages):
                    alone = [message]
                    await self._apply(alone, decode(message))
                    if not alone:
                        messages.remove(message)
                return

    async def _refuse(self, message: AbstractIncomingMessage, reason: str, *, internal: bool = False) -> None:
        """Dead-letter ``message`` and mark whatever operations it names as failed."""
        log.error("refusing command message", reason=reason, message_id=message.message_id)
        await self._fail_operations(message.body, reason, internal)
        with contextlib.suppress(Exception):
            await message.reject(requeue=False)

    async def _fail_operations(self, body: bytes, reason: str, internal: bool) -> None:
        named = _named_operations(body)
        backoff = Backoff()
        while True:
            try:
                async with self._pool.acquire() as connection:
                    await fail_operations(connection, named, reason, internal=internal)
                return
            except TRANSIENT_ERRORS:
                await backoff.pause()
            except asyncpg.PostgresError as error:
                # Postgres refuses what the message names (e.g. a reply channel it cannot notify). Raising here
                # would stop the worker, at every redelivery: mark without notifying, or give up; the message
                # still goes to the dead-letter queue, for the operator.
                log.error("cannot mark the refused message's operations failed", error=repr(error))
                if not any(op.reply_to for op in named):
                    return
                named = [NamedOperation(op.id, op.workspace_id, None) for op in named]


def decode(message: AbstractIncomingMessage) -> list[Command]:
    """The commands of a message, or :class:`Poison` saying why there are none."""
    try:
        envelope = CommandEnvelope.model_validate_json(message.body)
    except ValidationError as error:
        raise Poison(f"not a valid command envelope: {_summary(error)}") from None
    for command in envelope.commands:
        if message.routing_key != str(command.workspace_id):
            raise Poison(
                f"routing key {message.routing_key!r} must be the command's workspace id {command.workspace_id}"
            )
    return list(envelope.commands)


def _summary(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def _named_operations(body: bytes) -> list[NamedOperation]:
    """Best effort: the operations a malformed message still names, so they can be marked failed."""
    try:
        data = orjson.loads(body)
        found = []
        for command in data.get("commands", []):
            op, ws, reply_to = command.get("id"), command.get("workspace_id"), command.get("reply_to")
            if (isinstance(op, str) and _UUID.match(op) and isinstance(ws, int) and not isinstance(ws, bool)
                    and 0 < ws < 2**63):  # beyond bigint it names no workspace, and Postgres would refuse it
                found.append(NamedOperation(uuid.UUID(op), ws, reply_to if isinstance(reply_to, str) else None))
        return found
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return []


async def _ack(messages: Sequence[AbstractIncomingMessage]) -> None:
    """Ack every message: per channel, one ack with ``multiple`` on the last delivery tag."""
    last: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        try:
            channel = message.channel
        except ChannelInvalidStateError:  # closed (a lost connection): the broker redelivers it, and dedupe answers
            continue
        last[id(channel)] = message
    for message in last.values():
        try:
            await message.ack(multiple=True)
        except Exception as error:  # the channel is gone: the broker will redeliver, and dedupe answers
            log.warning("ack failed", error=repr(error))

