"""Webhooks' pure rules (no I/O): their signing secrets and signatures (the Standard Webhooks scheme), which
addresses a delivery may reach (no server-side request forgery), and how long a failing delivery waits.

Signing, as https://www.standardwebhooks.com says: the secret is ``whsec_`` + base64 of random bytes; the key is
those bytes; ``webhook-signature`` is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")).

Signing needs the secret itself (a hash would not sign), so it is stored sealed (:class:`SecretBox`) with keys
the database does not hold (``CFV_SECRET_KEYS``): a copy of the database alone reveals no secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SECRET_PREFIX = "whsec_"  # noqa: S105 (the form of a secret, not one)
SEALED_PREFIX = "fernet:"  # a sealed secret as stored; one stored before sealing began is still whsec_...
_SECRET_BYTES = 32

#: Cloud providers' instance metadata services (AWS, GCP, Azure, ... and AWS's IPv6 one): refused whatever else.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                                ipaddress.ip_address("100.100.100.200")})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def new_secret() -> str:
    """A fresh signing secret (256 random bits), as Standard Webhooks writes them."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of a delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


class SecretUnavailable(Exception):
    """A stored signing secret that the keys at hand cannot open (or no key to seal one with)."""


class SecretBox:
    """Seals signing secrets for storage and opens them to sign, with Fernet (AES-128-CBC and HMAC-SHA256, from
    the cryptography library). Keys come newest first: the first seals, any of them opens, so a new key can be
    put in front and the secrets resealed under it (:meth:`reseal`) before the old one is dropped."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys]) if keys else None

    @classmethod
    def from_setting(cls, value: str) -> SecretBox:
        """The box of ``CFV_SECRET_KEYS``: keys separated by commas (raises ``ValueError`` for a malformed one)."""
        return cls([key.strip() for key in value.split(",") if key.strip()])

    @property
    def can_seal(self) -> bool:
        """Whether there is a key to seal new secrets with."""
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        """``secret`` as stored: sealed with the newest key."""
        if self._fernet is None:
            raise SecretUnavailable("no key to seal signing secrets with: set CFV_SECRET_KEYS")
        return SEALED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret a stored one holds (one stored before sealing began is as it was)."""
        if stored.startswith(SECRET_PREFIX):
            return stored
        if self._fernet is None:
            raise SecretUnavailable("the signing secret is sealed and CFV_SECRET_KEYS is empty")
        try:
            return self._fernet.decrypt(stored.removeprefix(SEALED_PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretUnavailable("no key of CFV_SECRET_KEYS opens the signing secret (was the key that sealed "
                                    "it dropped before the secrets were resealed?)") from None

    def reseal(self, stored: str) -> str:
        """A stored secret sealed anew with the newest key (one stored before sealing began, sealed)."""
        return self.seal(self.open(stored))


def new_secret_key() -> str:
    """A fresh key for ``CFV_SECRET_KEYS``."""
    return Fernet.generate_key().decode()


def address_refusal(address: IPAddress) -> str | None:
    """Why a delivery may not reach ``address`` (None: it may): only public unicast addresses are allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 (mapped, 6to4, Teredo's client) is judged as that IPv4 address.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            address = embedded
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def url_refusal(url: str) -> str | None:
    """Why ``url`` cannot be a webhook's (None: its form is fine): http or https, a host, no credentials. Its
    addresses are checked apart (:func:`address_refusal`), since they take a DNS lookup, and again at each
    delivery."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"not a valid URL ({error})"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs may receive webhooks"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "the URL may not carry credentials"
    if port == 0:
        return "the URL's port is 0"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, if it is one."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def retry_delay(failures: int, *, first: float, ceiling: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th failed attempt at an event: exponential (``first``, doubling, up
    to ``ceiling``), with full jitter in its upper half (so receivers coming back are not hit all at once)."""
    base = min(ceiling, first * 2.0 ** max(0, failures - 1))
    jitter: float = (rng or random).random()
    return base / 2 + jitter * base / 2
