"""cfv's RabbitMQ topology, declared by every process at start and rendered for operators.

Commands enter ``cfv.commands``, a consistent-hash exchange keyed by workspace id, which spreads
workspaces over ``cfv.commands.<n>`` quorum queues. Each queue has a single active consumer, so one
workspace's commands are applied strictly in the order they were published, while different shards are
applied in parallel. Workers dead-letter to ``cfv.commands.dead`` a message they cannot apply (see
:mod:`cfv.worker.service`); RabbitMQ does so itself after ``delivery_limit`` deliveries, a backstop. Change
events leave through the ``cfv.events`` topic exchange.

``deploy/rabbitmq-definitions.json`` is :func:`definitions` rendered for the default settings; a test keeps
the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelPreconditionFailed

log = structlog.get_logger("cfv.broker")

COMMANDS_EXCHANGE = "cfv.commands"
DEAD_LETTER_EXCHANGE = "cfv.commands.dlx"
DEAD_LETTER_QUEUE = "cfv.commands.dead"
#: A copy of every dead letter, for the workers: they settle the operations of a message RabbitMQ dead-lettered.
DEAD_LETTER_SETTLE_QUEUE = "cfv.commands.dead.settle"
EVENTS_EXCHANGE = "cfv.events"
_DEAD_LETTER_QUEUES = (DEAD_LETTER_QUEUE, DEAD_LETTER_SETTLE_QUEUE)  # both bound to the DLX
CONSISTENT_HASH = "x-consistent-hash"
REQUIRED_PLUGIN = "rabbitmq_consistent_hash_exchange"


def shard_queue(n: int) -> str:
    """The name of command queue ``n``."""
    return f"{COMMANDS_EXCHANGE}.{n}"


def shard_queue_arguments(delivery_limit: int) -> dict[str, Any]:
    """Arguments of every command queue."""
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-delivery-limit": delivery_limit,
        "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
    }


@dataclass(frozen=True)
class Topology:
    """The declared objects a process works with."""

    commands: AbstractExchange
    events: AbstractExchange
    shard_queues: list[AbstractQueue]
    dead_letter_settle: AbstractQueue


async def declare(channel: AbstractChannel, *, shards: int, delivery_limit: int) -> Topology:
    """Declare (idempotently) every exchange, queue and binding of cfv."""
    commands = await channel.declare_exchange(COMMANDS_EXCHANGE, CONSISTENT_HASH, durable=True)
    dead = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    events = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dead_queues = {}
    for name in _DEAD_LETTER_QUEUES:
        dead_queues[name] = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await dead_queues[name].bind(dead, routing_key="")
    queues = []
    for n in range(shards):
        queue = await _declare_shard_queue(channel, shard_queue(n), delivery_limit)
        # With a consistent-hash exchange the binding key is the queue's weight on the hash ring.
        await queue.bind(commands, routing_key="1")
        queues.append(queue)
    return Topology(commands=commands, events=events, shard_queues=queues,
                    dead_letter_settle=dead_queues[DEAD_LETTER_SETTLE_QUEUE])


async def _declare_shard_queue(channel: AbstractChannel, name: str, delivery_limit: int) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, durable=True, arguments=shard_queue_arguments(delivery_limit))
    except ChannelPreconditionFailed as error:
        # A queue's arguments are fixed at its creation. One made by an earlier cfv (whose delivery limit was 10)
        # is used as it is rather than not at all; until it is recreated, a crash loop can dead-letter writes.
        if "x-delivery-limit" not in str(error):
            raise
        log.warning("shard queue has another delivery limit; using it as it is. Recreate it (drain it, delete "
                    "it, restart) to have the configured one", queue=name, wanted=delivery_limit, error=str(error))
        await channel.reopen()
        return await channel.declare_queue(name, passive=True)


def latest_death(message: AbstractIncomingMessage) -> dict[str, Any]:
    """The latest dead-lettering of ``message`` (RabbitMQ's ``x-death`` header, newest first); {} if none."""
    deaths = (message.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return dict(deaths[0])
    return {}


def header_text(value: object) -> str:
    """A header's value as text (AMQP tables may carry bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def dead_letter_depth(channel: AbstractChannel) -> int:
    """Messages waiting in the dead-letter queue for an operator."""
    # On aiormq's channel: aio-pika's robust channel answers a second passive declaration from its cache.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(DEAD_LETTER_QUEUE, passive=True)
    return int(declared.message_count or 0)


def definitions(*, shards: int, delivery_limit: int, vhost: str = "/") -> dict[str, Any]:
    """The same topology as a RabbitMQ definitions document (for ``load_definitions``)."""
    exchanges = [
        (COMMANDS_EXCHANGE, CONSISTENT_HASH),
        (DEAD_LETTER_EXCHANGE, "fanout"),
        (EVENTS_EXCHANGE, "topic"),
    ]
    dead_letters: list[tuple[str, dict[str, Any]]] = [(name, {"x-queue-type": "quorum"})
                                                      for name in _DEAD_LETTER_QUEUES]
    queues = dead_letters + [
        (shard_queue(n), shard_queue_arguments(delivery_limit)) for n in range(shards)
    ]
    bindings = [(DEAD_LETTER_EXCHANGE, name, "") for name, _ in dead_letters] + [
        (COMMANDS_EXCHANGE, shard_queue(n), "1") for n in range(shards)
    ]
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {"name": name, "vhost": vhost, "type": kind, "durable": True, "auto_delete": False,
             "internal": False, "arguments": {}}
            for name, kind in exchanges
        ],
        "queues": [
            {"name": name, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": arguments}
            for name, arguments in queues
        ],
        "bindings": [
            {"source": source, "vhost": vhost, "destination": destination, "destination_type": "queue",
             "routing_key": key, "arguments": {}}
            for source, destination, key in bindings
        ],
    }
