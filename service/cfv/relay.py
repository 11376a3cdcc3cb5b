"""The relay: publishes committed change events from the event log to ``cfv.events``, each workspace's in order.

Workers number each workspace's events in commit order (``events.position``) and notify ``cfv_outbox`` with
the workspaces that have new ones. The relay keeps a cursor per workspace, the last position the broker
confirmed (``relay_cursors``): each round it reads the events after the cursors of the workspaces it was told
about, publishes them as one window (:mod:`cfv.broker.confirmed`: one socket write, one wait for the
confirms), and moves the cursors. A crash between the confirm and the cursor's move publishes those events
again with the same ids: consumers may see a duplicate, never a gap. A sweep of every workspace, when the
relay starts and whenever no notification came for ``relay_poll_interval``, finds what a missed notification
hid.

One relay is active at a time (it holds a Postgres advisory lock; others wait as standbys).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import asyncpg
import structlog
from cfv_schemas.events import CONTENT_TYPE

from cfv import metrics
from cfv.broker import topology
from cfv.broker.confirmed import ConfirmedPublisher, Outgoing, PublishError
from cfv.broker.connection import amqp_urls
from cfv.contracts import OUTBOX_CHANNEL
from cfv.faults import TRANSIENT_ERRORS, keep_serving
from cfv.settings import Settings
from cfv.store import events
from cfv.store.database import GENERIC_PLANS, connect

log = structlog.get_logger("cfv.relay")
_CONFIRM_TIMEOUT = 10.0
_PRUNE_BATCH = 500


class Relay:
    """Moves events from the event log to the broker."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wake = asyncio.Event()
        self._dirty: set[int] = set()  # workspaces that may have events after their cursor
        self._sweep = True
        self._stopping = False
        self._stopped = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled or drained, surviving lost connections to either side (cfv's topology
        declared)."""
        try:
            await keep_serving(self._lead, stopping=lambda: self._stopping, what="relay", log=log,
                               expected=TRANSIENT_ERRORS + (aio_pika.exceptions.AMQPError, PublishError, EOFError))
        finally:
            self._stopped.set()

    async def drain(self) -> None:
        """Stop once the round being published is confirmed and its cursors moved; return when stopped."""
        self._stopping = True
        self._wake.set()
        await self._stopped.wait()

    async def _lead(self) -> None:
        db = await connect(self._settings.database_url, settings=GENERIC_PLANS)
        publisher: ConfirmedPublisher | None = None
        pruner: asyncio.Task[None] | None = None
        try:
            while not await events.take_relay_lock(db):
                if self._stopping:
                    return
                await asyncio.sleep(self._settings.relay_poll_interval)
            publisher = await ConfirmedPublisher.connect_any(amqp_urls(self._settings.amqp_url), name="cfv-relay")
            await db.add_listener(OUTBOX_CHANNEL, self._notified)
            cursors = await events.relay_cursors(db)
            self._sweep = True
            log.info("relay active")
            pruner = asyncio.create_task(self._prune_forever())
            caught_up = True
            while not self._stopping:
                if self._sweep:
                    self._sweep = False
                    self._dirty.update(await events.workspaces_with_unpublished_events(db))
                if not self._dirty:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._settings.relay_poll_interval)
                    except TimeoutError:
                        self._sweep = True
                    continue
                if caught_up:  # let the events of the next few batches join this window: one round for them all
                    await asyncio.sleep(self._settings.relay_linger)
                caught_up = await self._publish_round(db, publisher, cursors) < self._settings.relay_batch
        finally:
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            if publisher is not None:
                await publisher.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(db.close(), 2)

    async def _prune_forever(self) -> None:
        """While active: every ``prune_every`` seconds, prune the event log (its own connection; the rounds keep
        theirs)."""
        while True:
            await asyncio.sleep(self._settings.prune_every)
            try:
                await self.prune()
            except TRANSIENT_ERRORS as error:
                log.warning("cannot prune the event log", error=repr(error))

    async def prune(self) -> int:
        """Delete the published events older than ``event_retention``, the idempotency records older than
        ``idempotency_retention`` and the settled operations older than ``operation_retention``, in small statements
        (each at most ``_PRUNE_BATCH`` rows, of a workspace for events) that do not hold up the writers for long;
        return how many events went."""
        db = await connect(self._settings.database_url)
        try:
            settings = self._settings
            total = pruned_keys = pruned_operations = 0
            while deleted := await events.prune(db, older_than=settings.event_retention, per_workspace=_PRUNE_BATCH):
                total += deleted
            while deleted := await events.prune_idempotency_keys(db, older_than=settings.idempotency_retention,
                                                                 limit=_PRUNE_BATCH):
                pruned_keys += deleted
            while deleted := await events.prune_operations(db, older_than=settings.operation_retention,
                                                           limit=_PRUNE_BATCH):
                pruned_operations += deleted
            if total or pruned_keys or pruned_operations:
                log.info("pruned", events=total, idempotency_keys=pruned_keys, operations=pruned_operations)
            return total
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(db.close(), 2)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            self._dirty.update(int(part) for part in str(payload).split(",") if part)
        except ValueError:
            self._sweep = True
        self._wake.set()

    async def _publish_round(self, db: asyncpg.Connection[Any], publisher: ConfirmedPublisher,
                             cursors: dict[int, int]) -> int:
        """Publish the next window of events of the dirty workspaces; move their cursors past it; return how many
        it published."""
        workspaces = sorted(self._dirty)
        self._dirty.clear()  # notifications arriving from now on mark them again
        limit = self._settings.relay_batch
        rows = await events.next_to_publish(db, cursors={ws: cursors.get(ws, 0) for ws in workspaces}, limit=limit)
        if not rows:
            return 0
        if len(rows) == limit:  # there may be more: look again next round
            self._dirty.update(workspaces)
        exchange = topology.EVENTS_EXCHANGE
        async with asyncio.timeout(_CONFIRM_TIMEOUT):
            await publisher.publish([Outgoing(exchange, r["routing_key"], r["event"].encode(), r["event_id"],
                                              r["type"], CONTENT_TYPE) for r in rows])
        heads: dict[int, int] = {}
        for r in rows:
            heads[r["workspace_id"]] = r["position"]
        await events.advance_cursors(db, heads=heads)
        cursors.update(heads)
        self.published += len(rows)
        metrics.EVENTS_PUBLISHED.inc(len(rows))
        return len(rows)


async def measure_outbox(pool: asyncpg.Pool[Any]) -> None:
    """Set the outbox's gauges: events committed and not yet published, and the oldest one's age."""
    unpublished, oldest_age = await events.outbox_lag(pool)
    metrics.OUTBOX_UNPUBLISHED.set(unpublished)
    metrics.OUTBOX_OLDEST_AGE.set(oldest_age)
