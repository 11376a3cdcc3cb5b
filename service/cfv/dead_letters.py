"""``cfv dlq``: what waits in the commands' dead-letter queue (``cfv.commands.dead``), and why; and putting it back.

A message lands there when a worker refuses it (it can never be applied: malformed, unsigned, or it broke the
worker ``CFV_CRASH_LIMIT`` times) or when RabbitMQ's delivery limit is reached; its operations are marked failed.
``replay`` republishes a message unchanged (same body, signature and id, without its ``reply_to``: nobody waits
any more) to ``cfv.commands`` with its original routing key, after setting its failed operations back to pending,
so that the worker applies it for real rather than answering the failure it recorded. (It is applied after what
was written since: a replay is the operator's decision to apply it now.) Reading the queue takes every message
and gives back those not removed (``basic.get`` then ``nack`` with requeue).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from cfv_schemas.signing import SIGNATURE_HEADER

from cfv.broker import topology
from cfv.broker.confirmed import ConfirmedPublisher, Outgoing
from cfv.broker.connection import amqp_urls, connect
from cfv.contracts import named_operations
from cfv.settings import Settings
from cfv.store import operations
from cfv.store.database import connect as connect_db

_CONFIRM_TIMEOUT = 30.0
_DROPPED_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                    "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-delivery-count")


@dataclass
class DeadLetter:
    """One message of the dead-letter queue, as an operator needs to see it."""

    number: int  # its place in the queue, from 1
    message_id: str | None
    routing_key: str  # where it was published (the workspace id)
    reason: str  # RabbitMQ's: rejected (by a worker), delivery_limit, expired, maxlen
    queue: str  # the queue it died in
    deaths: int
    dead_at: datetime | None
    size: int
    signed: bool
    operations: list[uuid.UUID] = field(default_factory=list)
    why: list[str] = field(default_factory=list)  # what the failed operations say (cfv's reason)
    message: AbstractIncomingMessage | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON form ``cfv dlq list`` prints."""
        return {"number": self.number, "message_id": self.message_id, "routing_key": self.routing_key,
                "reason": self.reason, "queue": self.queue, "deaths": self.deaths,
                "dead_at": self.dead_at.isoformat() if self.dead_at else None, "size": self.size,
                "signed": self.signed, "operations": [str(o) for o in self.operations], "why": self.why}


@contextlib.asynccontextmanager
async def taken(settings: Settings, limit: int) -> AsyncIterator[tuple[list[DeadLetter], AbstractQueue]]:
    """Take up to ``limit`` messages of the dead-letter queue (unacknowledged); every one not acked inside the
    block goes back to the queue when it ends."""
    connection = await connect(amqp_urls(settings.amqp_url), name="cfv-dlq")
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=0)
        queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
        found: list[DeadLetter] = []
        while len(found) < limit and (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(_describe(len(found) + 1, message))
        await _explain(settings, found)
        try:
            yield found, queue
        finally:
            for letter in found:
                if letter.message is not None and not letter.message.processed:
                    with contextlib.suppress(Exception):
                        await letter.message.nack(requeue=True)
    finally:
        await connection.close()


async def replay(settings: Settings, letters: Sequence[DeadLetter]) -> int:
    """Republish ``letters`` (taken with :func:`taken`) to ``cfv.commands``, their operations pending again; each
    is removed from the dead-letter queue once the broker confirmed its copy. Returns how many."""
    ids = [op for letter in letters for op in letter.operations]
    db = await connect_db(settings.database_url)
    try:
        await operations.reopen_failed(db, operation_ids=ids)
    finally:
        await db.close()
    publisher = await ConfirmedPublisher.connect_any(amqp_urls(settings.amqp_url), name="cfv-dlq-replay")
    try:
        for letter in letters:
            message = letter.message
            assert message is not None
            headers = {k: v for k, v in (message.headers or {}).items() if k not in _DROPPED_HEADERS}
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                await publisher.publish([Outgoing(topology.COMMANDS_EXCHANGE, letter.routing_key, message.body,
                                                  message.message_id or uuid.uuid4().hex, message.type,
                                                  message.content_type or "application/json", headers)],
                                        mandatory=True)
            await message.ack()
    finally:
        await publisher.close()
    return len(letters)


def _describe(number: int, message: AbstractIncomingMessage) -> DeadLetter:
    death = topology.latest_death(message)
    keys = death.get("routing-keys") or [message.routing_key or ""]
    when = death.get("time")
    if isinstance(when, datetime) and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # AMQP timestamps are UTC
    return DeadLetter(
        number=number, message_id=message.message_id, routing_key=topology.header_text(keys[0]),
        reason=topology.header_text(death.get("reason") or (message.headers or {}).get("x-first-death-reason", "?")),
        queue=topology.header_text(death.get("queue", "?")),
        deaths=int(death.get("count", 1) or 1), dead_at=when if isinstance(when, datetime) else None,
        size=len(message.body), signed=bool(message.headers and SIGNATURE_HEADER in message.headers),
        operations=[op.id for op in named_operations(message.body)], message=message)



async def _explain(settings: Settings, letters: Sequence[DeadLetter]) -> None:
    """Add what cfv recorded about each message's failed operations."""
    ids = [op for letter in letters for op in letter.operations]
    if not ids:
        return
    db = await connect_db(settings.database_url)
    try:
        reasons = await operations.failure_reasons(db, operation_ids=ids)
    finally:
        await db.close()
    for letter in letters:
        letter.why = sorted({reason for op in letter.operations for reason in reasons.get(op, [])})
