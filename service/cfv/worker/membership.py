"""This worker's presence among the workers, and the live workers it sees (:mod:`cfv.store.workers`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

from cfv.faults import TRANSIENT_ERRORS
from cfv.store.database import connect
from cfv.store.workers import live_workers, presence_settings

log = structlog.get_logger("cfv.worker")


class Membership:
    """Holds a presence connection named after ``worker_id`` and lists the live workers through it."""

    def __init__(self, dsn: str, worker_id: str, *, timeout: float = 5.0) -> None:
        self.worker_id = worker_id
        self._dsn = dsn
        self._timeout = timeout
        self._connection: asyncpg.Connection[Any] | None = None

    async def members(self) -> list[str] | None:
        """The live workers, this one among them; None while the database cannot say (it is retried next
        time, and the connection remade: until then, other workers see this one as gone)."""
        try:
            async with asyncio.timeout(self._timeout):
                if self._connection is None or self._connection.is_closed():
                    self._connection = await connect(self._dsn, settings=presence_settings(self.worker_id))
                return await live_workers(self._connection)
        except TRANSIENT_ERRORS as error:
            log.warning("cannot list the live workers", error=repr(error))
            await self.close()
            return None

    async def close(self) -> None:
        """Leave: other workers stop counting this one at their next look."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)
            if not connection.is_closed():
                connection.terminate()
