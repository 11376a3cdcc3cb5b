"""cfv's RabbitMQ topology, declared by every process at start and rendered for operators.

Commands enter ``cfv.commands``, a consistent-hash exchange keyed by workspace id, which spreads
workspaces over ``cfv.commands.<n>`` quorum queues. Each queue has a single active consumer, so one
workspace's commands are applied strictly in the order they were published, while different shards are
applied in parallel. Workers dead-letter to ``cfv.commands.dead`` a message they cannot apply (see
:mod:`cfv.worker.service`); RabbitMQ does so itself after ``delivery_limit`` deliveries, a backstop. Change
events leave through the ``cfv.events`` topic exchange.

What an operator may change is a policy, not a queue argument (arguments are fixed when a queue is made, and
redeclaring it with others fails): the policy ``cfv-commands`` gives the command queues their dead-letter
exchange and delivery limit (:func:`commands_policy`, set by :mod:`cfv.broker.policies`). The queue type and
the single active consumer are what the ordering rests on, and RabbitMQ takes neither from a policy: they stay
arguments.

``deploy/rabbitmq-definitions.json`` is :func:`definitions` rendered for the default settings; a test keeps
the two equal.
"""

from __future__ import annotations

import re
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


#: The arguments every command queue is declared with: what cfv's ordering rests on, and cannot be a policy.
SHARD_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum", "x-single-active-consumer": True}
#: What an earlier cfv declared as arguments and a policy now sets.
_FORMER_ARGUMENTS = ("x-delivery-limit", "x-dead-letter-exchange")

POLICY = "cfv-commands"
#: Above the usual catch-all policies (RabbitMQ applies one policy per queue: the matching one of highest priority).
POLICY_PRIORITY = 10
POLICY_PATTERN = r"^cfv\.commands\.[0-9]+$"
#: Policy scopes that reach a quorum queue.
_QUEUE_SCOPES = ("queues", "all", "quorum_queues")


def commands_policy(delivery_limit: int) -> dict[str, Any]:
    """The policy ``cfv-commands``, as the management API and definitions files take it."""
    return {"pattern": POLICY_PATTERN, "apply-to": "queues", "priority": POLICY_PRIORITY,
            "definition": {"dead-letter-exchange": DEAD_LETTER_EXCHANGE, "delivery-limit": delivery_limit}}


def _effective(policies: list[dict[str, Any]], queue: str) -> list[dict[str, Any]]:
    """The policies that may apply to ``queue``: those of highest priority among the ones matching it (RabbitMQ
    applies one; which of several tied ones is not defined)."""
    matching = [p for p in policies
                if p.get("apply-to") in _QUEUE_SCOPES and re.search(str(p.get("pattern", "")), queue)]
    if not matching:
        return []
    top = max(int(p.get("priority", 0)) for p in matching)
    return [p for p in matching if int(p.get("priority", 0)) == top]


def policy_problem(policies: list[dict[str, Any]], shards: int) -> str | None:
    """Why the command queues would not dead-letter into cfv's exchange under ``policies`` (a virtual host's, as
    the management API lists them), or None: every queue must follow a policy that names it."""
    for n in range(shards):
        name = shard_queue(n)
        effective = _effective(policies, name)
        if not effective:
            return f"no policy applies to {name}"
        for policy in effective:  # each tied one could be the one applied
            exchange = (policy.get("definition") or {}).get("dead-letter-exchange")
            if exchange != DEAD_LETTER_EXCHANGE:
                return (f"{name} follows the policy {policy.get('name')!r}, whose dead-letter-exchange is "
                        f"{exchange!r}, not {DEAD_LETTER_EXCHANGE!r}")
    return None


def without_delivery_limit(policies: list[dict[str, Any]], shards: int) -> str | None:
    """The name of a policy the command queues follow that sets no delivery limit (None: all set one)."""
    for n in range(shards):
        for policy in _effective(policies, shard_queue(n)):
            if "delivery-limit" not in (policy.get("definition") or {}):
                return str(policy.get("name"))
    return None


@dataclass(frozen=True)
class Topology:
    """The declared objects a process works with."""

    commands: AbstractExchange
    events: AbstractExchange
    shard_queues: list[AbstractQueue]
    dead_letter_settle: AbstractQueue


async def declare_exchanges(channel: AbstractChannel) -> None:
    """Declare (idempotently) cfv's exchanges only (a broker without the consistent-hash plugin refuses here)."""
    await channel.declare_exchange(COMMANDS_EXCHANGE, CONSISTENT_HASH, durable=True)
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare(channel: AbstractChannel, *, shards: int) -> Topology:
    """Declare (idempotently) every exchange, queue and binding of cfv (the policy is set apart: it needs the
    management API)."""
    commands = await channel.declare_exchange(COMMANDS_EXCHANGE, CONSISTENT_HASH, durable=True)
    dead = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    events = await channel.declare_exchange(EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    dead_queues = {}
    for name in _DEAD_LETTER_QUEUES:
        dead_queues[name] = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await dead_queues[name].bind(dead, routing_key="")
    queues = []
    for n in range(shards):
        queue = await _declare_shard_queue(channel, shard_queue(n))
        # With a consistent-hash exchange the binding key is the queue's weight on the hash ring.
        await queue.bind(commands, routing_key="1")
        queues.append(queue)
    return Topology(commands=commands, events=events, shard_queues=queues,
                    dead_letter_settle=dead_queues[DEAD_LETTER_SETTLE_QUEUE])


async def _declare_shard_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, durable=True, arguments=SHARD_QUEUE_ARGUMENTS)
    except ChannelPreconditionFailed as error:
        # A queue's arguments are fixed at its creation. One made by an earlier cfv, which declared its delivery
        # limit and dead-letter exchange as arguments, is used as it is rather than not at all; its arguments
        # take precedence over the policy until it is recreated.
        if not any(argument in str(error) for argument in _FORMER_ARGUMENTS):
            raise
        log.warning("shard queue was made with arguments that the policy cfv-commands now sets; using it as it "
                    "is (its own arguments win over the policy). Recreate it (drain it, delete it, restart) to "
                    "follow the policy", queue=name, error=str(error))
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
    """The same topology, and the policy, as a RabbitMQ definitions document (for ``load_definitions``)."""
    exchanges = [
        (COMMANDS_EXCHANGE, CONSISTENT_HASH),
        (DEAD_LETTER_EXCHANGE, "fanout"),
        (EVENTS_EXCHANGE, "topic"),
    ]
    dead_letters: list[tuple[str, dict[str, Any]]] = [(name, {"x-queue-type": "quorum"})
                                                      for name in _DEAD_LETTER_QUEUES]
    queues = dead_letters + [(shard_queue(n), SHARD_QUEUE_ARGUMENTS) for n in range(shards)]
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
        "policies": [{"name": POLICY, "vhost": vhost, **commands_policy(delivery_limit)}],
    }
