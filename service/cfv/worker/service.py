"""The worker process: consume command messages, apply them in batches, ack after commit.

Deliveries from every shard queue this worker is the active consumer of arrive in one inbox, in delivery
order. The worker takes what is ready (up to ``worker_batch_max`` messages), applies it in one transaction,
and acks it only after the commit. A message that cannot be a command (bad JSON, unknown version, wrong
routing key, no valid signature) is refused at once to the dead-letter queue and its operations marked failed.
A message with an AMQP ``reply_to`` gets its commands' outcomes published there (at least once: a redelivered
message is answered again, from the record). When Postgres
is unreachable, the batch is retried until it commits; its messages stay unacked meanwhile, so a worker
killed at any point loses nothing: the broker redelivers, and completed commands are recognised.

A redelivered message is a suspect (its worker may have died of it) and is applied alone, in its place in the
order. Only a death while applying it alone, past its workspace's lock, counts against it (migration 0012):
after ``crash_limit`` of those it is dead-lettered and its operations failed with the reason. Deaths of a
worker that waits for a lock or a dependency, or that holds the message in a batch, never do, so a crash loop
redelivering a whole prefetch again and again dead-letters nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from cfv_schemas.commands import Command, CommandEnvelope
from cfv_schemas.signing import BadSignature, verify_message
from pydantic import ValidationError

from cfv.broker import topology
from cfv.domain.writes import ErrorType
from cfv.faults import TRANSIENT_ERRORS, Backoff
from cfv.settings import Settings
from cfv.store import batches
from cfv.store.database import Connection
from cfv.worker.apply import NamedOperation, Outcome, apply_batch, fail_operations

log = structlog.get_logger("cfv.worker")


class Poison(Exception):
    """A message that can never be applied."""

    def __init__(self, reason: str, kind: ErrorType = ErrorType.VALIDATION) -> None:
        super().__init__(reason)
        self.kind = kind


class Blamed(Exception):
    """A redelivered message the worker died applying, alone, ``deaths`` times."""

    def __init__(self, deaths: int) -> None:
        super().__init__(deaths)
        self.deaths = deaths


@dataclass
class Delivery:
    """A command message, its commands, the public key that signed it, and (once applied) their outcomes."""

    message: AbstractIncomingMessage
    commands: list[Command]
    signer: bytes
    outcomes: list[Outcome] = field(default_factory=list)


class Worker:
    """Consumes ``cfv.commands.*`` and applies commands to Postgres."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool[Any], connection: AbstractRobustConnection) -> None:
        self._settings = settings
        self._pool = pool
        self._connection = connection
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._reply_channel: AbstractChannel | None = None
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
                declared = await topology.declare(  # first: it may reopen the channel, which would drop the qos
                    channel, shards=self._settings.command_shards, delivery_limit=self._settings.delivery_limit
                )
                await channel.set_qos(prefetch_count=self._settings.worker_prefetch)
                for queue in declared.shard_queues:
                    await queue.consume(self._receive)
                await declared.dead_letter_settle.consume(self._settle_dead_letter)
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
        accepted: list[Delivery] = []
        for message in messages:
            try:
                accepted.append(decode(message))
            except Poison as error:
                await self._refuse(message, str(error), error.kind)
        # In delivery order: runs of first deliveries go as one batch; a redelivered message (its worker may have
        # died of it) goes alone, so that only what it does itself can count against it.
        run: list[Delivery] = []
        for delivery in accepted:
            if delivery.message.redelivered:
                await self._settle(run)
                run = []
                await self._settle([delivery], suspect=True)
            else:
                run.append(delivery)
        await self._settle(run)

    async def _settle(self, deliveries: list[Delivery], *, suspect: bool = False) -> None:
        """Apply, answer and ack ``deliveries``."""
        if not deliveries:
            return
        if suspect:
            await self._apply_suspect(deliveries)
        else:
            await self._apply(deliveries)
        await self._reply(deliveries)
        await _ack([delivery.message for delivery in deliveries])

    async def _apply_suspect(self, deliveries: list[Delivery]) -> None:
        """Apply a redelivered message alone, counting the attempt against it from the moment its transaction
        holds the workspace's lock (migration 0012): if the worker dies then, the message is to blame. Dead-letter
        it once ``crash_limit`` attempts have ended so."""
        [delivery] = deliveries
        digest = hashlib.sha256(delivery.message.body).digest()
        begun = False

        async def locked(connection: Connection) -> None:
            nonlocal begun
            if not begun:  # a retry after a transient error is the same attempt: the worker did not die
                async with self._pool.acquire() as outside:
                    unfinished = await batches.begin_attempt(outside, digest)
                begun = True
                if unfinished > self._settings.crash_limit:
                    raise Blamed(unfinished - 1)
            await batches.end_attempt(connection, digest)  # committed with the apply

        await self._apply(deliveries, locked)
        if not deliveries:  # refused: its attempts are over
            await self._end_attempt(digest)

    async def _end_attempt(self, digest: bytes) -> None:
        try:
            async with self._pool.acquire() as connection:
                await batches.end_attempt(connection, digest)
        except TRANSIENT_ERRORS as error:  # a row left behind only counts against a message already refused
            log.warning("cannot clear a refused message's attempts", error=repr(error))

    async def _apply(self, deliveries: list[Delivery],
                     locked: Callable[[Connection], Awaitable[None]] | None = None) -> None:
        """Apply the deliveries' commands in one transaction; a delivery refused on the way leaves the list."""
        commands = [command for d in deliveries for command in d.commands]
        signed_by = [d.signer for d in deliveries for _ in d.commands]
        backoff = Backoff()
        while True:
            try:
                async with self._pool.acquire() as connection:
                    outcomes = iter(await apply_batch(connection, commands, signed_by, locked=locked))
                for delivery in deliveries:
                    delivery.outcomes = [next(outcomes) for _ in delivery.commands]
                self.applied_commands += len(commands)
                log.debug("batch applied", messages=len(deliveries), commands=len(commands))
                return
            except TRANSIENT_ERRORS as error:
                log.warning("apply failed, retrying", error=repr(error), retry_in=backoff.delay,
                            commands=len(commands))
                await backoff.pause()
            except Blamed as blamed:
                await self._refuse(deliveries[0].message, f"the worker died {blamed.deaths} times while applying "
                                   "this message alone; it is kept in the dead-letter queue for the operator",
                                   ErrorType.INTERNAL, deliveries[0].signer)
                deliveries.clear()
                return
            except Exception as error:  # refused by Postgres, or breaking our code (e.g. a number orjson cannot encode)
                if len(deliveries) == 1:
                    log.error("command failed in the database", error=repr(error))
                    await self._refuse(deliveries[0].message, "the command could not be applied because of an "
                                       "internal error; it is kept in the dead-letter queue for the operator",
                                       ErrorType.INTERNAL, deliveries[0].signer)
                    deliveries.clear()
                    return
                # One message broke the whole batch: apply message by message to find it; the others commit.
                log.warning("batch failed, applying message by message", error=repr(error))
                for delivery in list(deliveries):
                    alone = [delivery]
                    await self._apply(alone)
                    if not alone:
                        deliveries.remove(delivery)
                return

    async def _refuse(self, message: AbstractIncomingMessage, reason: str, kind: ErrorType,
                      signer: bytes | None = None) -> None:
        """Dead-letter ``message``, mark whatever operations it names as failed, and answer its ``reply_to``."""
        log.error("refusing command message", reason=reason, message_id=message.message_id)
        outcomes = await self._fail_operations(message.body, reason, kind, signer)
        if message.reply_to:
            await self._publish_reply(message, outcomes or [{"id": None, "status": "failed", "values": [],
                                                             "errors": [{"type": kind.value, "message": reason,
                                                                         "field": "command"}]}])
        with contextlib.suppress(Exception):
            await message.reject(requeue=False)

    async def _settle_dead_letter(self, message: AbstractIncomingMessage) -> None:
        """Settle the operations of a message RabbitMQ dead-lettered itself (its delivery limit, a backstop), so
        that their clients learn it; the worker settled those it refused (reason ``rejected``) when it did."""
        why = _text(_first_death(message).get("reason"))
        if why != "rejected":
            try:
                signer: bytes | None = decode(message).signer
            except Poison:
                signer = None
            reason = (f"RabbitMQ dead-lettered the message ({why}; its limit is {self._settings.delivery_limit} "
                      "deliveries); it is kept in the dead-letter queue for the operator")
            log.error("settling a dead-lettered message", reason=reason, message_id=message.message_id)
            outcomes = await self._fail_operations(message.body, reason, ErrorType.INTERNAL, signer)
            if message.reply_to and outcomes:
                await self._publish_reply(message, outcomes)
        await message.ack()

    async def _reply(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.message.reply_to:
                await self._publish_reply(delivery.message, delivery.outcomes)

    async def _publish_reply(self, message: AbstractIncomingMessage, outcomes: list[Outcome]) -> None:
        """Publish ``outcomes`` to the message's ``reply_to`` queue; a reply that cannot go is logged, not retried
        (the outcomes stay readable as operations)."""
        assert message.reply_to is not None
        if not may_reply_to(message):
            log.info("not replying: reply_to is neither a direct reply-to nor a queue of the publishing user",
                     reply_to=message.reply_to, user_id=message.user_id)
            return
        try:
            if self._reply_channel is None or self._reply_channel.is_closed:
                self._reply_channel = await self._connection.channel(publisher_confirms=False)
            await self._reply_channel.default_exchange.publish(
                aio_pika.Message(orjson.dumps(outcomes), content_type="application/json",
                                 correlation_id=message.correlation_id or message.message_id),
                routing_key=message.reply_to)
        except Exception as error:
            log.warning("cannot send a reply", error=repr(error), reply_to=message.reply_to)

    async def _fail_operations(self, body: bytes, reason: str, kind: ErrorType,
                               signer: bytes | None) -> list[Outcome]:
        named = _named_operations(body)
        backoff = Backoff()
        while True:
            try:
                async with self._pool.acquire() as connection:
                    return await fail_operations(connection, named, reason, kind, signer)
            except TRANSIENT_ERRORS:
                await backoff.pause()
            except asyncpg.PostgresError as error:
                # Postgres refuses what the message names (e.g. a reply channel it cannot notify). Raising here
                # would stop the worker, at every redelivery: mark without notifying, or give up; the message
                # still goes to the dead-letter queue, for the operator.
                log.error("cannot mark the refused message's operations failed", error=repr(error))
                if not any(op.reply_to for op in named):
                    return []
                named = [NamedOperation(op.id, op.workspace_id, None) for op in named]


def may_reply_to(message: AbstractIncomingMessage) -> bool:
    """Whether the worker may publish to the message's ``reply_to``: RabbitMQ's direct reply-to (a name the
    broker made for the publisher's channel), or a queue of the publishing user, named ``<user>.*``, the user
    being the message's ``user_id``, which RabbitMQ checks against the connection. Anything else could make
    the worker post into another tenant's queue."""
    reply_to = message.reply_to or ""
    if reply_to.startswith("amq.rabbitmq.reply-to"):
        return True
    return bool(message.user_id) and reply_to.startswith(f"{message.user_id}.")


def decode(message: AbstractIncomingMessage) -> Delivery:
    """The commands of a message and who signed them, or :class:`Poison` saying why there are none."""
    try:
        envelope = CommandEnvelope.model_validate_json(message.body)
    except ValidationError as error:
        raise Poison(f"not a valid command envelope: {_summary(error)}") from None
    for command in envelope.commands:
        if message.routing_key != str(command.workspace_id):
            raise Poison(
                f"routing key {message.routing_key!r} must be the command's workspace id {command.workspace_id}"
            )
    try:
        signer = verify_message(message.body, message.headers)
    except BadSignature as error:
        raise Poison(str(error), ErrorType.UNAUTHENTICATED) from None
    return Delivery(message, list(envelope.commands), signer)


def _first_death(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The latest dead-lettering of ``message`` (RabbitMQ's ``x-death`` header, newest first)."""
    deaths = message.headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return dict(deaths[0])
    return {}


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


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

