"""Authentication: API keys (``X-API-Key`` or ``Authorization: Bearer``), stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from cfv.gateway import keys
from cfv.gateway.errors import ApiError, Handler
from cfv.store.queries import query

KEY_PREFIX = "cfv_"
_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key of a workspace."""

    key_id: int
    workspace_id: int
    workspace_slug: str

    @property
    def actor(self) -> str:
        """How the principal is named as the setter of values and in events."""
        return f"key:{self.key_id}"


def new_key() -> tuple[str, str, bytes]:
    """A fresh key: (the key to show once, its public prefix, the hash to store)."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)


def hash_key(key: str) -> bytes:
    """The stored form of a key. Keys carry 256 random bits, so a fast unsalted hash is safe here."""
    return hashlib.sha256(key.encode()).digest()


class Authenticator:
    """Finds the principal of a request's key, caching hits for a few seconds."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def principal(self, request: web.Request) -> Principal:
        """The caller, or a 401 error."""
        key = _presented_key(request)
        if key is None:
            raise ApiError.one(401, "authentication", "send an API key in X-API-Key or Authorization: Bearer")
        try:
            digest = hash_key(key)
        except UnicodeEncodeError:  # header bytes that are not UTF-8 (aiohttp keeps them as surrogates)
            raise ApiError.one(401, "authentication", "the API key is not valid") from None
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._pool.fetchrow(query("workspace_by_key_hash"), digest)
        if row is None:
            raise ApiError.one(401, "authentication", "the API key is not valid")
        principal = Principal(row["key_id"], row["workspace_id"], row["slug"])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + _CACHE_SECONDS, principal)
        return principal


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every request under ``/api/``; the principal is ``request["principal"]``."""
    if request.path.startswith("/api/"):
        request[keys.PRINCIPAL] = await request.app[keys.AUTHENTICATOR].principal(request)
    return await handler(request)
