"""Key expiries are timezone-aware moments from 1970 to the end of 9999, on create and update alike: one outside
(an expiry of 0001-01-01 was saved, and from then on every key of the workspace failed to list or authenticate)
is refused, and one stored before the bound was set is held to it by migration 0010."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cfv.domain.credentials import hash_key
from cfv.store.migrate import apply_migrations
from support import PG_ADMIN, Stack, Workspace, _with_db
from test_admin_api import KEYS, USERS, error_of, objects, only
from test_upgrade_to_access import _migrate_until

OUT_OF_RANGE = ["0001-01-01", "0001-01-01T00:00:00+00:00", "1969-12-31T23:59:59Z", "9999-12-31T23:00:00-10:00"]


async def _first_key(stack: Stack, workspace: Workspace) -> dict[str, Any]:
    status, body, _ = await stack.request("GET", KEYS, workspace)
    assert status == 200, body
    return objects(body, "api_keys")[0]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
async def test_an_expiry_out_of_range_is_refused_on_update_and_nothing_breaks(
        stack: Stack, workspace: Workspace, moment: str) -> None:
    key = await _first_key(stack, workspace)
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{key['id']}", workspace, json={"expires_at": moment})
    error = error_of(status, body, 422, "validation")
    assert error["field"] == "expires_at" and "out of range" in error["message"], error
    assert (await _first_key(stack, workspace))["expires_at"] is None  # listed, unchanged
    status, _, _ = await stack.request("GET", "/api/v1/custom_fields", workspace)
    assert status == 200  # and the key still authenticates


@pytest.mark.parametrize("moment", [*OUT_OF_RANGE, "10000-01-01T00:00:00Z"])
async def test_an_expiry_out_of_range_is_refused_on_create(stack: Stack, workspace: Workspace, moment: str) -> None:
    owner = (await _first_key(stack, workspace))["user_id"]
    status, body, _ = await stack.request("POST", f"{USERS}/{owner}/api_keys", workspace, json={"expires_at": moment})
    error = error_of(status, body, 422, "validation")
    assert error["field"] == "expires_at", error


async def test_the_bounds_themselves_are_taken(stack: Stack, workspace: Workspace) -> None:
    owner = (await _first_key(stack, workspace))["user_id"]
    status, body, _ = await stack.request("POST", f"{USERS}/{owner}/api_keys", workspace, json={})
    assert status == 201, body
    key = only(body, "api_keys")  # another key than the caller's: the first bound expires it
    for moment, shown in (("1970-01-01T00:00:00Z", "1970-01-01T00:00:00+00:00"),
                          ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59+00:00")):
        status, body, _ = await stack.request("PATCH", f"{KEYS}/{key['id']}", workspace,
                                              json={"expires_at": moment})
        assert status == 200 and only(body, "api_keys")["expires_at"] == shown, body


async def test_a_stored_expiry_before_1970_is_held_to_the_bound(tmp_path: Path) -> None:
    name = f"cfv_upgrade_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = _with_db(PG_ADMIN, name)
    try:
        _migrate_until(dsn, "0009.lean_writes", tmp_path)
        db: Any = await asyncpg.connect(dsn)
        try:
            workspace = await db.fetchval("INSERT INTO workspaces (slug, name) VALUES ('acme', 'acme') RETURNING id")
            user = await db.fetchval("INSERT INTO users (workspace_id, kind, name, account_role) "
                                     "VALUES ($1, 'service', 'owner', 'account_admin') RETURNING id", workspace)
            # How the API saved 0001-01-01: asyncpg writes the least datetime as -infinity, and reads that back as
            # a naive datetime, which no comparison with an aware one survives.
            await db.execute("INSERT INTO api_keys (workspace_id, user_id, prefix, secret_hash, expires_at) "
                             "VALUES ($1, $2, 'p', $3, $4)", workspace, user, hash_key("cfv_old_0"),
                             datetime(1, 1, 1, tzinfo=UTC))
            assert await db.fetchval("SELECT expires_at = '-infinity' FROM api_keys")
            assert (await db.fetchval("SELECT expires_at FROM api_keys")).tzinfo is None
        finally:
            await db.close()
        assert apply_migrations(dsn) >= 1
        db = await asyncpg.connect(dsn)
        try:
            assert str(await db.fetchval("SELECT expires_at FROM api_keys")) == "1970-01-01 00:00:00+00:00"
            with pytest.raises(asyncpg.CheckViolationError):
                await db.execute("UPDATE api_keys SET expires_at = '0001-01-01 00:00:00+00'")
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
