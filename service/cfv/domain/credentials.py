"""API keys: how they are made and the forms cfv stores (no I/O). The gateway authenticates with them, the
operator's command line and the admin API issue them, through the store."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cfv_schemas.signing import public_key, signing_key

KEY_PREFIX = "cfv_"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A fresh key: the secret to show once, its public prefix, and the two forms cfv stores."""

    secret: str
    prefix: str
    digest: bytes
    public_key: bytes


def new_key() -> NewKey:
    """A fresh random key (256 bits)."""
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(secret, prefix, hash_key(secret), public_key(signing_key(secret)))


def hash_key(key: str) -> bytes:
    """The stored form of a key. Keys carry 256 random bits, so a fast unsalted hash is safe here."""
    return hashlib.sha256(key.encode()).digest()
