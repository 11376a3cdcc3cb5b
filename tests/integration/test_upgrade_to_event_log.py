"""Migration 0007 on a database whose outbox holds published and unpublished events (an upgrade): every event
moves to the log, numbered per workspace in outbox order, and the relay's cursors start after what was
published, so nothing is lost or published twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cfv.store.migrate import apply_migrations
from support import PG_ADMIN, _with_db
from test_upgrade_to_access import _migrate_until


async def test_the_outbox_becomes_the_event_log(tmp_path: Path) -> None:
    name = f"cfv_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(PG_ADMIN, name)
    try:
        _migrate_until(dsn, "0006.access", tmp_path)
        db: Any = await asyncpg.connect(dsn)
        try:
            acme, globex = [await db.fetchval("INSERT INTO workspaces (slug, name) VALUES ($1, $1) RETURNING id",
                                              slug) for slug in ("acme", "globex")]
            # outbox order: acme 1 (published), globex 1 (published), acme 2 (published), acme 3, globex 2
            rows = [(acme, True), (globex, True), (acme, True), (acme, False), (globex, False)]
            ids = []
            for n, (workspace, published) in enumerate(rows):
                event_id = uuid.uuid4()
                ids.append(event_id)
                event = {"id": str(event_id), "type": "cfv.value.created.v1", "data": {"n": n}}
                await db.execute("INSERT INTO outbox (event_id, workspace_id, routing_key, event, published_at) "
                                 "VALUES ($1, $2, $3, $4::jsonb, CASE WHEN $5 THEN now() END)", event_id,
                                 workspace, f"ws.Story.1.created.{n}", orjson.dumps(event).decode(), published)
        finally:
            await db.close()

        assert apply_migrations(dsn) >= 1

        db = await asyncpg.connect(dsn)
        try:
            log = await db.fetch("SELECT workspace_id, position, event_id, type, routing_key, event::text "
                                 "FROM events ORDER BY workspace_id, position")
            assert [(r["workspace_id"], r["position"], r["event_id"]) for r in log] == [
                (acme, 1, ids[0]), (acme, 2, ids[2]), (acme, 3, ids[3]), (globex, 1, ids[1]), (globex, 2, ids[4])]
            assert {r["type"] for r in log} == {"cfv.value.created.v1"}
            assert [orjson.loads(r["event"])["data"]["n"] for r in log] == [0, 2, 3, 1, 4]
            cursors = await db.fetch("SELECT workspace_id, position FROM relay_cursors ORDER BY workspace_id")
            assert [tuple(r) for r in cursors] == [(acme, 2), (globex, 1)]
            view = await db.fetch("SELECT event_id, published_at IS NOT NULL AS published FROM outbox "
                                  "ORDER BY workspace_id, position")
            assert [r["published"] for r in view] == [True, True, False, True, False]
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
