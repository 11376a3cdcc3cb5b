"""One ``LISTEN`` connection to Postgres for a process, coming back after it is lost.

Postgres delivers a notification only once its transaction committed. Notifications sent while the connection
was down are lost: whoever listens registers what to do after a reconnection (read what it may have missed,
or forget what it cached).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from cfv.faults import TRANSIENT_ERRORS
from cfv.store.database import connect

log = structlog.get_logger("cfv.store")

Handler = Callable[[str], None]

#: Announced by the database at commit, with the workspace's id, when a key or a user changes (migration 0011).
CREDENTIALS_CHANNEL = "cfv_credentials"


class Listener:
    """Calls a handler with the payload of each notification on its channels."""

    def __init__(self, dsn: str, *, check_every: float = 0.5) -> None:
        self._dsn = dsn
        self._check_every = check_every
        self._handlers: dict[str, Handler] = {}
        self._after_reconnect: list[Callable[[], Awaitable[None]]] = []
        self._connection: asyncpg.Connection[Any] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for each notification on ``channel`` (register before :meth:`start`)."""
        self._handlers[channel] = handler

    def after_reconnect(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` each time the connection is back after a loss (notifications may be missed)."""
        self._after_reconnect.append(callback)

    async def start(self) -> None:
        """Connect and listen (and keep listening through reconnections)."""
        await self._connect()
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        """Stop listening."""
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._connection:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 2)

    async def _connect(self) -> None:
        connection = await connect(self._dsn)
        for channel, handler in self._handlers.items():
            await connection.add_listener(channel, _adapt(handler))
        self._connection = connection

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            if self._connection is not None and not self._connection.is_closed():
                continue
            try:
                await self._connect()
                log.info("listener reconnected", channels=sorted(self._handlers))
                for callback in self._after_reconnect:
                    await callback()
            except TRANSIENT_ERRORS as error:
                log.warning("listener cannot reconnect yet", error=repr(error))


def _adapt(handler: Handler) -> Callable[[object, int, str, object], None]:
    def on_notification(_connection: object, _pid: int, _channel: str, payload: object) -> None:
        handler(str(payload))
    return on_notification
