"""Waiting for outcomes: workers NOTIFY ``cfv_reply_<gateway id>`` at commit; the gateway listens.

Postgres delivers a notification only once its transaction committed, so an outcome heard here is durable.
If the listening connection drops, the waiter reads the outcomes it may have missed from the operations table
once it is back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import orjson
import structlog

from cfv.contracts import Outcome, reply_channel
from cfv.faults import TRANSIENT_ERRORS
from cfv.store import operations as stored_operations
from cfv.store.listener import Listener

log = structlog.get_logger("cfv.gateway")


class ReplyWaiter:
    """Futures for the outcomes of this gateway's commands, heard on ``listener``."""

    def __init__(self, listener: Listener, pool: asyncpg.Pool[Any]) -> None:
        self.gateway_id = uuid.uuid4().hex
        self._pool = pool
        self._waiting: dict[uuid.UUID, list[asyncio.Future[Outcome]]] = {}
        listener.listen(reply_channel(self.gateway_id), self._on_notification)
        listener.after_reconnect(self._fetch_missed)

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

    async def _fetch_missed(self) -> None:
        await self._fetch(list(self._waiting))

    def _on_notification(self, payload: str) -> None:
        to_fetch = []
        for outcome in orjson.loads(payload):
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
            rows = await stored_operations.settled_outcomes(self._pool, ids=operation_ids)
        except TRANSIENT_ERRORS as error:  # the waiters time out into a 202 and can poll
            log.warning("cannot read outcomes", error=repr(error))
            return
        for row in rows:
            self._resolve(row["outcome"])

    def _resolve(self, outcome: Outcome) -> None:
        for future in self._waiting.pop(uuid.UUID(outcome["id"]), []):
            if not future.done():
                future.set_result(outcome)
