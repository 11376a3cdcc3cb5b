"""The worker process: consume command messages, apply them in batches, ack after commit.

Every worker consumes every shard queue, each on a channel of its own; RabbitMQ makes one consumer of each
queue its single active one, the others waiting to take over. Workers spread the shards between them
(:mod:`cfv.worker.shards`): a worker active on a shard another live worker should have hands it over between two
batches, by closing that shard's channel, which gives the messages it held back to the queue, first in line,
before the next consumer is made active (then subscribes again, to wait in line). Per-key order holds across the
handover as it does across a crash.

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
import os
import random
import socket
import time
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

from cfv import metrics
from cfv.broker import topology
from cfv.contracts import NamedOperation, Outcome, named_operations
from cfv.domain.writes import ErrorType
from cfv.faults import TRANSIENT_ERRORS, Backoff, explain_rabbitmq
from cfv.settings import Settings
from cfv.store import batches
from cfv.store.database import Connection
from cfv.worker.apply import apply_batch, fail_operations
from cfv.worker.membership import Membership
from cfv.worker.shards import assign

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


@dataclass(eq=False)
class ShardConsumer:
    """This worker's consumer of one shard queue, on a channel of its own."""

    shard: int
    channel: AbstractChannel
    since: float = field(default_factory=time.monotonic)
    #: A delivery came: RabbitMQ made this consumer the queue's active one, which it stays until it leaves.
    active: bool = False
    #: Handed over: its channel is closed, and what it delivered but was not applied went back to the queue.
    released: bool = False


@dataclass
class Delivery:
    """A command message, its commands, the public key that signed it, and (once applied) their outcomes."""

    message: AbstractIncomingMessage
    commands: list[Command]
    signer: bytes
    outcomes: list[Outcome] = field(default_factory=list)


class Worker:
    """Consumes ``cfv.commands.*`` and applies commands to Postgres."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool[Any], connection: AbstractRobustConnection,
                 membership: Membership | None = None) -> None:
        self._settings = settings
        self._pool = pool
        self._connection = connection
        self._membership = membership or Membership(settings.database_url, worker_id())
        self._inbox: asyncio.Queue[tuple[ShardConsumer, AbstractIncomingMessage]] = asyncio.Queue()
        self._reply_channel: AbstractChannel | None = None
        self._consumers: dict[int, ShardConsumer] = {}
        self._applying = asyncio.Lock()  # held while a batch is applied; a handover happens between batches
        self._hold: dict[int, float] = {}  # shard: seconds to keep it before handing it over again
        self._control: AbstractChannel | None = None  # declares the topology, consumes the dead letters to settle
        self._draining = False
        self.applied_commands = 0
        connection.reconnect_callbacks.add(self._forget_activity)

    def _forget_activity(self, _: object) -> None:
        # Consumers restored after a reconnection join the waiting line anew: which is active shows again by
        # its deliveries.
        for consumer in self._consumers.values():
            consumer.active = False

    @property
    def worker_id(self) -> str:
        """This worker's name among the workers (its presence connection's ``application_name`` suffix)."""
        return self._membership.worker_id

    def active_shards(self) -> set[int]:
        """The shards this worker has been delivered messages of, since it last (re)subscribed to them."""
        return {n for n, consumer in self._consumers.items() if consumer.active and not consumer.released}

    async def run(self) -> None:
        """Consume and apply until cancelled."""
        await self.start()
        await self.serve()

    async def start(self) -> None:
        """Be present among the workers and consume every shard queue (raises :class:`Unmet` if the broker lacks
        what cfv needs)."""
        await self._membership.members()  # present before consuming: the others count this worker at once
        await self._subscribe()

    async def serve(self) -> None:
        """Apply what the queues deliver until cancelled (after :meth:`start`)."""
        rebalancer = asyncio.create_task(self._rebalance_forever())
        try:
            while True:
                batch = [await self._inbox.get()]
                while len(batch) < self._settings.worker_batch_max and not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                async with self._applying:
                    # A handover may have come between the get and the lock: what its consumer delivered is
                    # back in the queue, for the next consumer.
                    await self._process([message for consumer, message in batch if not consumer.released])
        finally:
            rebalancer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rebalancer
            await self._membership.close()

    async def _subscribe(self) -> None:
        """Declare the topology and consume every shard queue, retrying while the broker is not ready.

        A quorum queue declared a moment ago may refuse consumers until its leader is elected.
        """
        backoff = Backoff(first=0.2)
        while True:
            channel = await self._connection.channel()
            try:
                # first: it may reopen the channel, which would drop the qos
                declared = await topology.declare(channel, shards=self._settings.command_shards)
                await channel.set_qos(prefetch_count=self._settings.worker_prefetch)
                await declared.dead_letter_settle.consume(self._settle_dead_letter)
                self._control = channel
                shards = range(self._settings.command_shards)  # all settled before any is undone:
                subscribed = await asyncio.gather(*map(self._consume_shard, shards), return_exceptions=True)
                for outcome in subscribed:
                    if isinstance(outcome, BaseException):
                        raise outcome
            except TRANSIENT_ERRORS + (AMQPError, RuntimeError) as error:  # RuntimeError: a closed channel
                if (unmet := explain_rabbitmq(error)) is not None:  # no consistent-hash plugin: waiting is no use
                    raise unmet from None
                log.warning("cannot subscribe yet, retrying", error=repr(error), retry_in=backoff.delay)
                for consumer in [*self._consumers.values()]:
                    await self._close_consumer(consumer)
                self._consumers.clear()
                with contextlib.suppress(Exception):
                    await channel.close()
                await backoff.pause()
                continue
            log.info("worker started", shards=len(declared.shard_queues), worker_id=self.worker_id)
            return

    async def drain(self) -> None:
        """Stop consuming, between two batches: once the batch being applied is committed, answered and acked,
        every channel of this worker closes, and what was delivered to it and not applied goes back to its queue,
        first in line, for the next worker. :meth:`run` applies nothing more."""
        async with self._applying:
            self._draining = True
            for consumer in [*self._consumers.values()]:
                await self._close_consumer(consumer)
            self._consumers.clear()
            if self._control is not None:
                with contextlib.suppress(Exception):
                    await self._control.close()
        log.info("worker drained: its unapplied deliveries are back in their queues")

    async def _consume_shard(self, n: int) -> None:
        """Consume shard ``n`` on a channel of its own: active at once if no other consumer is, else waiting."""
        channel = await self._connection.channel()
        consumer = ShardConsumer(n, channel)
        try:
            await channel.set_qos(prefetch_count=self._settings.worker_prefetch)
            queue = await channel.declare_queue(topology.shard_queue(n), passive=True)

            async def receive(message: AbstractIncomingMessage) -> None:
                # Synchronous up to the put, so the inbox keeps the order of delivery.
                consumer.active = True
                self._inbox.put_nowait((consumer, message))

            await queue.consume(receive)
        except BaseException:
            await self._close_consumer(consumer)
            raise
        self._consumers[n] = consumer

    async def _close_consumer(self, consumer: ShardConsumer) -> None:
        consumer.released = True
        with contextlib.suppress(Exception):
            await consumer.channel.close()

    async def _rebalance_forever(self) -> None:
        """Look at the live workers every ``rebalance_every`` seconds (jittered) and hand over the shards this
        worker is active on that another should have."""
        while True:
            await asyncio.sleep(self._settings.rebalance_every * random.uniform(0.75, 1.25))
            try:
                await self.rebalance()
            except Exception as error:  # the broker or the database is away: the next look tries again
                log.warning("cannot rebalance shards", error=repr(error))

    async def rebalance(self) -> None:
        """Hand over the shards this worker is active on that another live worker should have, and consume
        again any shard it lost its consumer of."""
        members = await self._membership.members()
        if not members or self.worker_id not in members:
            return  # blind: keep what it has (RabbitMQ still lets one consumer only be active on each shard)
        owners = assign(self._settings.command_shards, members)
        now = time.monotonic()
        unwanted = sorted(n for n in self.active_shards()
                          if owners[n] != self.worker_id and now - self._consumers[n].since >= self._hold.get(n, 0))
        missing = [n for n in range(self._settings.command_shards) if n not in self._consumers]
        if not unwanted and not missing:
            return
        async with self._applying:
            for n in unwanted:
                consumer = self._consumers.pop(n)
                # Given back soon after a handover: its owner is not consuming (its broker connection is down,
                # say). Each handover counts a delivery of what the shard held, so wait longer before the next.
                quick = now - consumer.since < 10 * self._settings.rebalance_every
                self._hold[n] = min(60.0, max(2 * self._settings.rebalance_every, 2 * self._hold.get(n, 0))) \
                    if quick else 0.0
                await self._close_consumer(consumer)
                log.info("handed a shard over", shard=n, to=owners[n])
            if self._draining:
                return
            for n in [*unwanted, *missing]:
                await self._consume_shard(n)

    async def _process(self, messages: list[AbstractIncomingMessage]) -> None:
        if not messages:
            return
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
        # Every line logged about these commands names the requests they came with (X-Request-ID).
        with structlog.contextvars.bound_contextvars(request_ids=_request_ids(deliveries)):
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
        started = time.perf_counter()
        while True:
            try:
                async with self._pool.acquire() as connection:
                    applied = await apply_batch(connection, commands, signed_by, locked=locked)
                outcomes = iter(applied)
                for delivery in deliveries:
                    delivery.outcomes = [next(outcomes) for _ in delivery.commands]
                self.applied_commands += len(commands)
                _measure(applied, time.perf_counter() - started)
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
        metrics.MESSAGES_DEAD_LETTERED.inc()
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
        why = topology.header_text(topology.latest_death(message).get("reason"))
        if why != "rejected":
            try:
                signer: bytes | None = decode(message).signer
            except Poison:
                signer = None
            limit = (f"its limit is {self._settings.delivery_limit} deliveries"
                     if self._settings.broker_policies == "apply" else "the limit the policy sets")
            reason = (f"RabbitMQ dead-lettered the message ({why}; {limit}); it is kept in the dead-letter queue "
                      "for the operator")
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
        named = named_operations(body)
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


def worker_id() -> str:
    """A name for this worker process, unique among the live ones: host, process id and a random part."""
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


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


def _summary(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]




def _request_ids(deliveries: Sequence[Delivery]) -> list[str]:
    return sorted({c.request_id for d in deliveries for c in d.commands if c.request_id is not None})


def _measure(outcomes: Sequence[Outcome], seconds: float) -> None:
    metrics.APPLY_LATENCY.observe(seconds)
    metrics.BATCH_COMMANDS.observe(len(outcomes))
    succeeded = sum(1 for outcome in outcomes if outcome["status"] == "succeeded")
    metrics.COMMANDS_APPLIED.labels("succeeded").inc(succeeded)
    if succeeded < len(outcomes):
        metrics.COMMANDS_APPLIED.labels("failed").inc(len(outcomes) - succeeded)



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

