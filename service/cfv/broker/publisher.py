"""Publishing commands with publisher confirms, coalescing concurrent commands of one workspace.

While a message for a workspace is on its way to the broker, further commands for that workspace wait and
then leave together in one message. Nothing is delayed when the broker is idle; under load, one message and
one confirm carry many commands. Order is kept: a workspace's commands leave in the order submitted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import ChannelInvalidStateError, DeliveryError
from cfv_schemas.commands import Command

CONTENT_TYPE = "application/json"
MAX_COMMANDS_PER_MESSAGE = 100


class PublishFailed(Exception):
    """The broker did not confirm a command, so it does not count as accepted.

    ``uncertain`` says the command may have reached the queue all the same (the confirm was lost or late),
    so a worker may still apply it; otherwise it certainly never left (the channel was closed, or the broker
    refused it).
    """

    def __init__(self, message: str, *, uncertain: bool) -> None:
        super().__init__(message)
        self.uncertain = uncertain


@dataclass
class _Pending:
    command: Command
    confirmed: asyncio.Future[None]


@dataclass
class _Lane:
    waiting: list[_Pending] = field(default_factory=list)
    busy: bool = False


class CommandPublisher:
    """Publishes commands to ``cfv.commands``; :meth:`submit` returns once the broker has confirmed."""

    def __init__(self, exchange: AbstractExchange, *, timeout: float = 5.0) -> None:
        self._exchange = exchange
        self._timeout = timeout
        self._lanes: dict[int, _Lane] = {}
        self.messages_published = 0

    async def submit(self, command: Command) -> None:
        """Publish ``command``; raise :class:`PublishFailed` unless the broker confirmed it."""
        pending = _Pending(command, asyncio.get_running_loop().create_future())
        lane = self._lanes.setdefault(command.workspace_id, _Lane())
        lane.waiting.append(pending)
        if not lane.busy:
            lane.busy = True
            asyncio.create_task(self._drain(command.workspace_id, lane))  # noqa: RUF006 (kept by the loop)
        await pending.confirmed

    async def _drain(self, workspace_id: int, lane: _Lane) -> None:
        try:
            while lane.waiting:
                batch = lane.waiting[:MAX_COMMANDS_PER_MESSAGE]
                del lane.waiting[:MAX_COMMANDS_PER_MESSAGE]
                error = await self._publish(workspace_id, [p.command for p in batch])
                for p in batch:
                    if p.confirmed.done():
                        continue
                    if error is None:
                        p.confirmed.set_result(None)
                    else:
                        p.confirmed.set_exception(error)
        finally:
            lane.busy = False
            if not lane.waiting:
                self._lanes.pop(workspace_id, None)

    async def _publish(self, workspace_id: int, commands: list[Command]) -> PublishFailed | None:
        body = encode_envelope(commands)
        message = aio_pika.Message(
            body,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(commands[0].id),
            headers={"cfv-commands": len(commands)},
        )
        try:
            await self._exchange.publish(
                message, routing_key=str(workspace_id), mandatory=True, timeout=self._timeout
            )
        except (ChannelInvalidStateError, DeliveryError) as error:  # never sent, or refused by the broker
            return PublishFailed(f"the broker did not take the command: {error!r}", uncertain=False)
        except Exception as error:  # sent, perhaps, but not confirmed
            return PublishFailed(f"the broker did not confirm the command: {error!r}", uncertain=True)
        self.messages_published += 1
        return None


def encode_envelope(commands: list[Command]) -> bytes:
    """The JSON body of a command message.

    Not ``exclude_none``: that would also drop an item's ``"value": null``, making the whole envelope (and so
    every command coalesced into it) invalid, instead of refusing that one item.
    """
    return orjson.dumps({"v": 1, "commands": [c.model_dump(mode="json") for c in commands]})
