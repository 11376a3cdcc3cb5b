"""A change to a key or a user takes effect at once on every gateway, not when its cache expires: the database
announces it at commit and each gateway forgets what it cached (issue 14, item 5)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from support import Stack, Workspace, free_port, running_stack

READ = "/api/v1/custom_fields"
#: Far below the five seconds a cached principal lasts, far above a notification's few milliseconds.
AT_ONCE = 1.0


@contextlib.asynccontextmanager
async def two_gateways(settings: Settings) -> AsyncIterator[tuple[Stack, Stack]]:
    other = settings.model_copy(update={"http_port": free_port()})
    async with running_stack(settings, worker=False, relay=False) as first, \
            running_stack(other, worker=False, relay=False) as second:
        yield first, second


async def _status(stack: Stack, key: str, path: str = READ) -> int:
    status, _, _ = await stack.request("GET", path, None, headers={"X-API-Key": key})
    return status


async def _seconds_until(stack: Stack, key: str, status: int, path: str = READ) -> float:
    start = time.monotonic()
    while await _status(stack, key, path) != status:
        assert time.monotonic() - start < 10, f"never answered {status}"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def _check(settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any],
                 change: Callable[[Stack, int, int], Awaitable[None]], *, path: str = READ,
                 then: int = 401) -> None:
    key = await issue_key(db, workspace.id, name="probe")
    async with two_gateways(settings) as (cached, elsewhere):
        assert await _status(cached, key.secret, path) == 200  # now cached on the first gateway
        await change(elsewhere, key.id, key.user_id)
        assert await _seconds_until(cached, key.secret, then, path) < AT_ONCE


async def test_a_key_revoked_on_one_gateway_stops_at_once_on_another(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async def revoke(elsewhere: Stack, key_id: int, _user: int) -> None:
        status, body, _ = await elsewhere.request("DELETE", f"/api/v1/api_keys/{key_id}", workspace)
        assert status in (200, 204), body
    await _check(settings, workspace, db, revoke)


async def test_a_key_revoked_by_hand_stops_at_once(settings: Settings, workspace: Workspace,
                                                   db: asyncpg.Connection[Any]) -> None:
    async def revoke(_: Stack, key_id: int, _user: int) -> None:
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key_id)
    await _check(settings, workspace, db, revoke)


async def test_a_key_expired_early_stops_at_once(settings: Settings, workspace: Workspace,
                                                 db: asyncpg.Connection[Any]) -> None:
    async def expire(elsewhere: Stack, key_id: int, _user: int) -> None:
        status, body, _ = await elsewhere.request("PATCH", f"/api/v1/api_keys/{key_id}", workspace,
                                                  json={"api_key": {"expires_at": "2001-01-01T00:00:00Z"}})
        assert status == 200, body
    await _check(settings, workspace, db, expire)


async def test_a_deactivated_user_stops_at_once(settings: Settings, workspace: Workspace,
                                                db: asyncpg.Connection[Any]) -> None:
    async def deactivate(_: Stack, _key: int, user_id: int) -> None:
        await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", user_id)
    await _check(settings, workspace, db, deactivate)


async def test_a_lowered_role_takes_effect_at_once(settings: Settings, workspace: Workspace,
                                                   db: asyncpg.Connection[Any]) -> None:
    async def lower(_: Stack, _key: int, user_id: int) -> None:
        await db.execute("UPDATE users SET account_role = 'account_collaboration' WHERE id = $1", user_id)
    await _check(settings, workspace, db, lower, path="/api/v1/users", then=403)


async def test_after_the_listener_reconnects_the_cache_is_forgotten(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    """A revocation made while the gateway's listening connection was down is not heard; the cache is dropped
    when it comes back instead."""
    key = await issue_key(db, workspace.id, name="probe")
    async with running_stack(settings, worker=False, relay=False) as gateway:
        assert await _status(gateway, key.secret) == 200
        cut = await db.fetchval("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND query LIKE 'LISTEN%'")
        assert cut == 1
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        assert await _seconds_until(gateway, key.secret, 401) < 2.0  # the listener checks every 0.5 s
