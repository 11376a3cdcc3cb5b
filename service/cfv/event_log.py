"""``cfv events``: the operator's view of a workspace's event log, straight from PostgreSQL (no key; every event,
whatever its field's read access), and a replay of it into a consumer's own queue.

``tail`` prints events as JSON lines, as stored, and keeps following (polling the log); ``replay`` republishes
them, in order and unchanged (same id, same body, same properties as the relay gives them), into one queue
through the default exchange, with publisher confirms, so an AMQP consumer that missed events catches up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from cfv_schemas.events import CONTENT_TYPE

from cfv.broker.confirmed import ConfirmedPublisher, Outgoing
from cfv.broker.connection import amqp_urls
from cfv.settings import Settings
from cfv.store import events
from cfv.store.database import Connection

PAGE = 1000
_CONFIRM_TIMEOUT = 30.0


async def tail(db: Connection, workspace_id: int, *, after: int | None, types: Sequence[str] | None,
               follow: bool, emit: Callable[[str], None], poll: float = 0.5,
               started: Callable[[int], None] | None = None) -> int:
    """Emit the events after ``after`` (None: only those to come), then, with ``follow``, each new one as it is
    logged; return the last position emitted (or started after). ``started`` hears the position it starts
    after, once it knows it."""
    if after is None:
        after = (await events.bounds(db, workspace_id=workspace_id)).newest or 0
    if started is not None:
        started(after)
    while True:
        found = await events.stored_after(db, workspace_id=workspace_id, after=after, limit=PAGE, types=types)
        for event in found:
            emit(event.text)
        if found:
            after = found[-1].position
            continue
        if not follow:
            return after
        await asyncio.sleep(poll)


async def replay(settings: Settings, db: Connection, workspace_id: int, *, after: int, queue: str,
                 types: Sequence[str] | None) -> tuple[int, int | None]:
    """Publish the events after ``after`` up to the newest now, in order, into ``queue``; return how many, and
    the last position published (None: none)."""
    newest = (await events.bounds(db, workspace_id=workspace_id)).newest or 0
    publisher = await ConfirmedPublisher.connect_any(amqp_urls(settings.amqp_url), name="cfv-events-replay")
    count, last = 0, None
    try:
        while after < newest:
            found = [e for e in await events.stored_after(db, workspace_id=workspace_id, after=after, limit=PAGE)
                     if e.position <= newest]
            if not found:
                break
            wanted = [e for e in found if types is None or e.type in types]
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                # mandatory: a queue that does not exist is an error, not a silent drop
                await publisher.publish([Outgoing("", queue, e.text.encode(), e.id, e.type, CONTENT_TYPE)
                                         for e in wanted], mandatory=True)
            count += len(wanted)
            last = wanted[-1].position if wanted else last
            after = found[-1].position
    finally:
        await publisher.close()
    return count, last
