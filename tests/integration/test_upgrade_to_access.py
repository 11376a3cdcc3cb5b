"""Migration 0006 on a database that already holds workspaces, keys and idempotency records (an upgrade)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cfv.domain.credentials import hash_key
from cfv.store.migrate import MIGRATIONS, apply_migrations
from support import PG_ADMIN, _with_db
from yoyo import get_backend, read_migrations


def _migrate_until(dsn: str, last: str, directory: Path) -> None:
    """Apply the migrations up to ``last`` (a file stem), as a database made before the later ones was."""
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.stem <= last:
            shutil.copy(path, directory / path.name)
    backend = get_backend("postgresql+psycopg://" + dsn.partition("://")[2])
    try:
        with backend.lock():
            backend.apply_migrations(backend.to_apply(read_migrations(str(directory))))
    finally:
        backend.connection.close()


async def test_existing_keys_become_keys_of_an_owner_administrator(tmp_path: Path) -> None:
    name = f"cfv_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(PG_ADMIN, name)
    try:
        _migrate_until(dsn, "0005.custom_field_sets", tmp_path)
        db: Any = await asyncpg.connect(dsn)
        try:
            ws = [await db.fetchval("INSERT INTO workspaces (slug, name) VALUES ($1, $1) RETURNING id", slug)
                  for slug in ("acme", "globex", "empty")]
            key_ids = [await db.fetchval(
                "INSERT INTO api_keys (workspace_id, prefix, secret_hash, name) VALUES ($1, 'p', $2, 'old') "
                "RETURNING id", workspace, hash_key(f"cfv_old_{n}")) for n, workspace in enumerate(ws[:2] + ws[:1])]
            operation = uuid.uuid4()
            outcome = {"id": str(operation), "status": "succeeded", "errors": [],
                       "values": [{"setter": f"key:{key_ids[0]}"}]}
            await db.execute("INSERT INTO operations (id, workspace_id, status, outcome) VALUES ($1, $2, "
                             "'succeeded', $3::jsonb)", operation, ws[0], orjson.dumps(outcome).decode())
            await db.execute("INSERT INTO idempotency_keys (workspace_id, key, request_hash, operation_id) "
                             "VALUES ($1, 'retry-1', 'h', $2)", ws[0], operation)
        finally:
            await db.close()

        # 0006, and the migrations made after it (which must not disturb what 0006 did)
        assert apply_migrations(dsn) == len([p for p in MIGRATIONS.glob("*.sql") if p.stem > "0005.custom_field_sets"])

        db = await asyncpg.connect(dsn)
        try:
            owners = await db.fetch("SELECT workspace_id, kind, name, account_role FROM users ORDER BY workspace_id")
            assert [tuple(r) for r in owners] == [(ws[0], "service", "owner", "account_admin"),
                                                  (ws[1], "service", "owner", "account_admin")]
            keys = await db.fetch("SELECT k.id, k.workspace_id, u.workspace_id AS user_workspace, u.name "
                                  "FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.id")
            assert [r["id"] for r in keys] == key_ids
            assert all(r["workspace_id"] == r["user_workspace"] and r["name"] == "owner" for r in keys)
            assert await db.fetchval("SELECT key FROM idempotency_keys") == f"key:{key_ids[0]}|retry-1"
            assert await db.fetchval("SELECT count(*) FROM access_levels") == 10
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
