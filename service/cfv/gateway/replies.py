"""Waiting for outcomes: workers NOTIFY ``cfv_reply_<gateway id>`` at commit; the gateway listens.

Postgres delivers a notification only once its transaction committed, so an outcome heard here is durable.
If the listening connection drops, the waiter reconnects and reads the outcomes it may have missed from the
operations table.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import orjson
import structlog

from cfv.faults import TRANSIENT_ERRORS
from cfv.store.database import connect
from cfv.store.queries import query
from cfv.worker.apply import Outcome, reply_channel

log = structlog.get_logger("cfv.gateway")


class ReplyWaiter:
    """Futures for the outcomes of this gateway's commands."""

    def __init__(self, dsn: str, pool: asyncpg.Pool[Any]) -> None:
        self.gateway_id = uuid.uuid4().hex
        self._dsn = dsn
        self._pool = pool
        self._waiting: dict[uuid.UUID, list[asyncio.Future[Outcome]]] = {}
        self._connection: asyncpg.Connection[Any] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening (and keep listening through reconnections)."""
        await self._listen()
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

    def expect(self, operation_id: uuid.UUID) -> asyncio.Future[Outcome]:
        """A future for the outcome of ``operation_id``; call before publishing, so no reply is missed."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(operation_id, []).append(future)
        return future

    def forget(self, operation_id: uuid.UUID, future: asyncio.Future[Outcome]) -> None:
        """Stop waiting (the request ended)."""
        futures = self._waiting.get(operation_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiting[operation_id]

    async def _listen(self) -> None:
        connection = await connect(self._dsn)
        await connection.add_listener(reply_channel(self.gateway_id), self._on_notification)
        self._connection = connection

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self._connection is not None and not self._connection.is_closed():
                continue
            try:
                await self._listen()
                log.info("reply listener reconnected")
                await self._fetch(list(self._waiting))
            except TRANSIENT_ERRORS as error:
                log.warning("reply listener cannot reconnect yet", error=repr(error))

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        to_fetch = []
        for outcome in orjson.loads(str(payload)):
            if outcome.get("fetch"):
                to_fetch.append(uuid.UUID(outcome["id"]))
            else:
                self._resolve(outcome)
        if to_fetch:
            asyncio.create_task(self._fetch(to_fetch))  # noqa: RUF006 (short-lived)

    async def _fetch(self, operation_ids: list[uuid.UUID]) -> None:
        if not operation_ids:
            return
        try:
            rows = await self._pool.fetch(query("operation_outcomes"), operation_ids)
        except TRANSIENT_ERRORS as error:  # the waiters time out into a 202 and can poll
            log.warning("cannot read outcomes", error=repr(error))
            return
        for row in rows:
            self._resolve(row["outcome"])

    def _resolve(self, outcome: Outcome) -> None:
        for future in self._waiting.pop(uuid.UUID(outcome["id"]), []):
            if not future.done():
                future.set_result(outcome)
