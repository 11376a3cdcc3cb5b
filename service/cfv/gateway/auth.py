"""Authentication: API keys (``X-API-Key`` or ``Authorization: Bearer``), stored only as SHA-256 hashes.

A key belongs to a user (a person or a service account) of one workspace. The gateway also derives the key's
signing key (see :mod:`cfv_schemas.signing`) to sign the commands it publishes for the caller: workers trust a
command only through that signature, exactly as they would one an integration published itself.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.signing import public_key, signing_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cfv.domain.access import ACCOUNT_ADMIN, Grants, administers
from cfv.domain.credentials import hash_key
from cfv.gateway.errors import ApiError
from cfv.store import accounts
from cfv.store.listener import CREDENTIALS_CHANNEL, Listener

_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key of a user of a workspace."""

    key_id: int
    user_id: int
    workspace_id: int
    workspace_slug: str
    account_role: str
    signer: Ed25519PrivateKey | None = field(default=None, repr=False, compare=False)
    public_key: bytes = field(default=b"", repr=False, compare=False)  # the signer's public half (derived once)

    @property
    def actor(self) -> str:
        """How the principal is named as the setter of values and in events."""
        return f"key:{self.key_id}"

    @property
    def is_admin(self) -> bool:
        """An account administrator: may manage the workspace and see and edit every value."""
        return self.account_role == ACCOUNT_ADMIN


class Authenticator:
    """Finds the principal of a request's key, caching hits for a few seconds.

    The cache only spares the gateway a query. Every change to keys or users is announced by the database at
    commit (``cfv_credentials``, see migration 0011), and with a ``listener`` every gateway forgets its cache
    as soon as it hears one: a revoked key stops at once everywhere. Should the listening connection be down,
    the cache lasts five seconds at most; and the worker checks the key again in the transaction that applies
    each write.
    """

    def __init__(self, pool: asyncpg.Pool[Any], listener: Listener | None = None) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._generation = 0  # bumped by forget(): a lookup that began before must not refill the cache
        if listener is not None:
            listener.listen(CREDENTIALS_CHANNEL, lambda _workspace: self.forget())
            listener.after_reconnect(self._forget_after_reconnect)

    async def principal(self, request: web.Request) -> Principal:
        """The caller, or a 401 error."""
        key = _presented_key(request)
        if key is None:
            raise ApiError.one(401, "authentication", "send an API key in X-API-Key or Authorization: Bearer")
        hit = self._cache.get(key)  # by the key itself: a hit spares hashing it
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            digest = hash_key(key)
        except UnicodeEncodeError:  # header bytes that are not UTF-8 (aiohttp keeps them as surrogates)
            raise ApiError.one(401, "authentication", "the API key is not valid") from None
        generation = self._generation
        row = await accounts.principal_by_key_hash(self._pool, digest=digest)
        # The lookup is by hash; comparing again in constant time costs nothing and keeps timing flat.
        if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), digest):
            raise ApiError.one(401, "authentication", "the API key is not valid")
        if row["revoked_at"] is not None or row["deactivated_at"] is not None:
            raise ApiError.one(401, "authentication", "the API key was revoked")
        if row["expires_at"] is not None and row["expires_at"] <= datetime.now(UTC):
            raise ApiError.one(401, "authentication", "the API key has expired")
        signer = signing_key(key)
        public = public_key(signer)
        if row["public_key"] is None:  # a key made before keys signed commands: record its public half now
            await accounts.record_public_key(self._pool, key_id=row["key_id"], public_key=public)
        principal = Principal(row["key_id"], row["user_id"], row["workspace_id"], row["slug"], row["account_role"],
                              signer, public)
        if generation != self._generation:  # keys or roles changed meanwhile: answer, but do not remember
            return principal
        if len(self._cache) > 10_000:
            self._cache.clear()
        expiry = now + _CACHE_SECONDS
        if row["expires_at"] is not None:
            expiry = min(expiry, now + (row["expires_at"] - datetime.now(UTC)).total_seconds())
        self._cache[key] = (expiry, principal)
        return principal

    def forget(self) -> None:
        """Drop every cached principal (after a change of keys or users, here or anywhere)."""
        self._generation += 1
        self._cache.clear()

    async def _forget_after_reconnect(self) -> None:
        self.forget()  # changes announced while the listener was away went unheard


def _presented_key(request: web.Request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def require_admin(principal: Principal) -> None:
    """Refuse (403) a caller who is not an account administrator: definitions and users are theirs to manage."""
    if not principal.is_admin:
        raise ApiError.one(403, "forbidden", "only account administrators may do this")


async def require_project_admin(pool: asyncpg.Pool[Any], principal: Principal, project: str) -> None:
    """Refuse (403) a caller who administers neither the account nor ``project``."""
    if principal.is_admin:
        return
    permission = await accounts.project_permission(pool, workspace_id=principal.workspace_id,
                                                   user_id=principal.user_id, project=project)
    if not administers(Grants(principal.account_role, {project: permission} if permission else {}), project):
        raise ApiError.one(403, "forbidden", f"only administrators of project {project} (or of the account) may "
                           "do this")
