"""Publishing commands with publisher confirms, coalescing concurrent commands of one workspace and key.

While a message for a workspace and key is on its way to the broker, further commands of that key wait and
then leave together in one message, signed once with the key. Nothing is delayed when the broker is idle;
under load, one message, one signature and one confirm carry many commands. Order is kept: a key's commands
leave in the order submitted (concurrent requests of different keys have no order to keep).

Messages go through :class:`~cfv.broker.confirmed.ConfirmedPublisher` (a fifth of aio-pika's cost per message),
published ``mandatory``. When its connection fails, the next command connects again; if the broker cannot be
reached, the command fails at once as never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from cfv_schemas.commands import MAX_COMMANDS_PER_MESSAGE, Command
from cfv_schemas.signing import sign_message
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cfv.broker.confirmed import ConfirmedPublisher, Outgoing, PublishError, Unroutable
from cfv.broker.topology import COMMANDS_EXCHANGE

CONTENT_TYPE = "application/json"
log = structlog.get_logger("cfv.broker")


class PublishFailed(Exception):
    """The broker did not confirm a command, so it does not count as accepted.

    ``uncertain`` says the command may have reached the queue all the same (the confirm was lost or late),
    so a worker may still apply it; otherwise it certainly never left (the broker was unreachable, or it
    refused the message).
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
    last: int = 0  # commands in the lane's last message


class CommandPublisher:
    """Publishes commands to ``cfv.commands``; :meth:`submit` returns once the broker has confirmed."""

    def __init__(self, connect: Callable[[], Awaitable[ConfirmedPublisher]], *, timeout: float = 5.0,
                 linger: float = 0.0) -> None:
        self._connect = connect
        self._timeout = timeout
        self._linger = linger
        self._publisher: ConfirmedPublisher | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._lanes: dict[tuple[int, bytes], _Lane] = {}
        self.messages_published = 0

    async def submit(self, command: Command, signer: Ed25519PrivateKey, public_key: bytes) -> None:
        """Publish ``command`` signed by ``signer`` (whose public half is ``public_key``); raise
        :class:`PublishFailed` unless the broker confirmed it."""
        pending = _Pending(command, asyncio.get_running_loop().create_future())
        lane_key = (command.workspace_id, public_key)
        lane = self._lanes.setdefault(lane_key, _Lane())
        lane.waiting.append(pending)
        if not lane.busy:
            lane.busy = True
            asyncio.create_task(self._drain(lane_key, lane, signer))  # noqa: RUF006 (kept by the loop)
        await pending.confirmed

    async def check(self) -> None:
        """Raise unless a connection to the broker is open, connecting if none is (readiness)."""
        await self._connected()

    async def close(self) -> None:
        """Close the connection to the broker."""
        if self._publisher is not None:
            await self._publisher.close()

    async def _drain(self, lane_key: tuple[int, bytes], lane: _Lane, signer: Ed25519PrivateKey) -> None:
        try:
            while lane.waiting:
                if lane.last > 1 and len(lane.waiting) < MAX_COMMANDS_PER_MESSAGE and self._linger:
                    # A busy lane: more commands are coming; a message costs the broker about as much whatever
                    # it holds, so let a few more join this one.
                    await asyncio.sleep(self._linger)
                batch = lane.waiting[:MAX_COMMANDS_PER_MESSAGE]
                lane.last = len(batch)
                del lane.waiting[:MAX_COMMANDS_PER_MESSAGE]
                try:
                    error = await self._publish(lane_key, [p.command for p in batch], signer)
                except Exception as unexpected:  # whatever it is, no request may wait for ever
                    log.error("publishing failed unexpectedly", error=repr(unexpected))
                    await self._discard_current()
                    error = PublishFailed(f"the broker did not confirm the command: {unexpected!r}", uncertain=True)
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
                self._lanes.pop(lane_key, None)

    async def _publish(self, lane_key: tuple[int, bytes], commands: list[Command],
                       signer: Ed25519PrivateKey) -> PublishFailed | None:
        workspace_id, public_key = lane_key
        body = encode_envelope(commands)
        message = Outgoing(COMMANDS_EXCHANGE, str(workspace_id), body, str(commands[0].id), None, CONTENT_TYPE,
                           {"cfv-commands": len(commands), **sign_message(body, signer, public_key)})
        try:
            publisher = await self._connected()
        except (OSError, PublishError, TimeoutError) as error:
            return PublishFailed(f"the broker is unreachable: {error!r}", uncertain=False)
        try:
            async with asyncio.timeout(self._timeout):
                await publisher.publish([message], mandatory=True)
        except Unroutable as error:  # confirmed as lost
            return PublishFailed(f"the broker did not take the command: {error}", uncertain=False)
        except (PublishError, TimeoutError) as error:  # sent, perhaps, but not confirmed
            await self._discard(publisher)
            return PublishFailed(f"the broker did not confirm the command: {error!r}", uncertain=True)
        self.messages_published += 1
        return None

    async def _connected(self) -> ConfirmedPublisher:
        async with self._connecting:
            if self._publisher is None or not self._publisher.is_open:
                if self._publisher is not None:
                    await self._publisher.close()
                    self._publisher = None
                async with asyncio.timeout(self._timeout):
                    self._publisher = await self._connect()
            return self._publisher

    async def _discard_current(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._discard(self._publisher)

    async def _discard(self, publisher: ConfirmedPublisher) -> None:
        """Drop a connection that lost a confirm: whatever it still owes is unknown (the next command connects
        again)."""
        if self._publisher is publisher:
            self._publisher = None
        await publisher.close()


def encode_envelope(commands: list[Command]) -> bytes:
    """The JSON body of a command message.

    Not ``exclude_none``: that would also drop an item's ``"value": null``, making the whole envelope (and so
    every command coalesced into it) invalid, instead of refusing that one item.
    """
    return b'{"v":1,"commands":[' + b",".join(c.model_dump_json().encode() for c in commands) + b"]}"
