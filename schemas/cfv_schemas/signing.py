"""Signing command messages: how a command published straight to RabbitMQ proves who sent it.

Every command message carries two headers: ``cfv-key``, the public half of a key pair derived from the sender's
API key, and ``cfv-signature``, an Ed25519 signature of the message body. Workers verify the signature, then
look the public key up: it names the API key (and so the user) the commands act as, checked exactly like an
HTTP request made with that key. cfv stores only the public key, so nothing it stores can sign a command.

An integration signs with :func:`sign_message`::

    headers = sign_message(body, api_key)
    await exchange.publish(aio_pika.Message(body, headers=headers, ...), routing_key=str(workspace_id))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_HEADER = "cfv-key"
SIGNATURE_HEADER = "cfv-signature"
# Kept apart from the key's lookup hash (a plain SHA-256 of the key, which cfv stores): a different input.
_CONTEXT = b"cfv command signing v1\x00"


class BadSignature(Exception):
    """A message whose signature is missing, malformed or does not match its body."""


def signing_key(api_key: str) -> Ed25519PrivateKey:
    """The private key an API key signs with (derived, so there is nothing more to keep)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_CONTEXT + api_key.encode()).digest())


def public_key(private: Ed25519PrivateKey) -> bytes:
    """The 32 bytes cfv stores to recognise a key's signatures."""
    return private.public_key().public_bytes_raw()


def sign_message(body: bytes, api_key: str | Ed25519PrivateKey, public: bytes | None = None) -> dict[str, str]:
    """The headers that authenticate a command message ``body`` as sent with ``api_key`` (whose public key,
    ``public``, may be given to spare deriving it again)."""
    private = signing_key(api_key) if isinstance(api_key, str) else api_key
    return {KEY_HEADER: _b64(public or public_key(private)), SIGNATURE_HEADER: _b64(private.sign(body))}


def verify_message(body: bytes, headers: Mapping[str, object] | None) -> bytes:
    """The public key that signed ``body``, or :class:`BadSignature`."""
    headers = headers or {}
    key, signature = headers.get(KEY_HEADER), headers.get(SIGNATURE_HEADER)
    if isinstance(key, bytes):
        key = key.decode(errors="replace")
    if isinstance(signature, bytes):
        signature = signature.decode(errors="replace")
    if not isinstance(key, str) or not isinstance(signature, str):
        raise BadSignature(f"the message carries no credentials: sign it (headers {KEY_HEADER}, {SIGNATURE_HEADER})")
    try:
        raw_key, raw_signature = _unb64(key), _unb64(signature)
        Ed25519PublicKey.from_public_bytes(raw_key).verify(raw_signature, body)
    except (ValueError, binascii.Error, InvalidSignature):
        raise BadSignature("the message's signature does not match its body and key") from None
    return raw_key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
