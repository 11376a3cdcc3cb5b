"""Which workers are alive: each holds a connection to the database named after it while it runs.

Postgres already knows which sessions are open, and drops a dead process's session with its socket, so the
list needs no table, no heartbeat and no clean-up after a crash.
"""

from __future__ import annotations

from cfv.store.database import Connection
from cfv.store.queries import query

PRESENCE_PREFIX = "cfv-worker/"


def presence_settings(worker_id: str) -> dict[str, str]:
    """Server settings of a worker's presence connection (``application_name`` is at most 63 bytes)."""
    name = PRESENCE_PREFIX + worker_id
    if len(name.encode()) > 63:
        raise ValueError(f"worker id {worker_id!r} is too long")
    return {"application_name": name}


async def live_workers(connection: Connection) -> list[str]:
    """The ids of the workers present in this database, sorted."""
    return [row["worker_id"] for row in await connection.fetch(query("live_workers"), PRESENCE_PREFIX)]
