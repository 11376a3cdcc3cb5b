"""The relay: publishes committed change events from the outbox to ``cfv.events``, in outbox order.

One relay is active at a time (it holds a Postgres advisory lock; others wait), so events leave in the
order they were committed, which per (subject, field) is the order of the changes. An event is marked
published only after the broker confirmed it; a crash in between publishes it again with the same event id:
consumers may see a duplicate, never a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import asyncpg
import orjson
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from cfv_schemas.events import CONTENT_TYPE

from cfv.broker import topology
from cfv.faults import TRANSIENT_ERRORS
from cfv.settings import Settings
from cfv.store.database import connect
from cfv.store.queries import query
from cfv.worker.apply import OUTBOX_CHANNEL

log = structlog.get_logger("cfv.relay")


class Relay:
    """Moves events from the outbox to the broker."""

    def __init__(self, settings: Settings, connection: AbstractRobustConnection) -> None:
        self._settings = settings
        self._amqp = connection
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled, surviving lost connections to either side."""
        channel = await self._amqp.channel(publisher_confirms=True)
        declared = await topology.declare(
            channel, shards=self._settings.command_shards, delivery_limit=self._settings.delivery_limit
        )
        while True:
            try:
                await self._lead(declared.events)
            except TRANSIENT_ERRORS + (aio_pika.exceptions.AMQPError,) as error:
                log.warning("relay interrupted, restarting", error=repr(error))
                await asyncio.sleep(1.0)

    async def _lead(self, exchange: AbstractExchange) -> None:
        db = await connect(self._settings.database_url)
        try:
            while not await db.fetchval(query("relay_lock")):  # noqa: ASYNC110 (polls a lock held elsewhere)
                await asyncio.sleep(self._settings.relay_poll_interval)
            log.info("relay active")
            await db.add_listener(OUTBOX_CHANNEL, self._notified)
            while True:
                self._wake.clear()
                if await self._publish_round(db, exchange) < self._settings.relay_batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._settings.relay_poll_interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(db.close(), 2)

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _publish_round(self, db: asyncpg.Connection[Any], exchange: AbstractExchange) -> int:
        rows = await db.fetch(query("unpublished_events"), self._settings.relay_batch)
        if not rows:
            return 0
        # Publishes on one channel leave in call order; confirms are awaited together.
        results = await asyncio.gather(
            *(self._publish(exchange, row["routing_key"], row["event"]) for row in rows),
            return_exceptions=True,
        )
        confirmed = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("event not confirmed; will publish again", error=repr(result))
                break  # mark only the confirmed prefix, so nothing later overtakes it
            confirmed.append(row["position"])
        if confirmed:
            await db.execute(query("mark_published"), confirmed)
            self.published += len(confirmed)
        if len(confirmed) < len(rows):
            await asyncio.sleep(0.5)
        return len(confirmed)

    async def _publish(self, exchange: AbstractExchange, routing_key: str, event: dict[str, Any]) -> None:
        await exchange.publish(
            aio_pika.Message(
                orjson.dumps(event),
                content_type=CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=event["id"],
                type=event["type"],
            ),
            routing_key=routing_key,
            timeout=10,
        )
