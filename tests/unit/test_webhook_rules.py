"""Webhooks' pure rules (issue 11): Standard Webhooks secrets and signatures (checked against the independent
``standardwebhooks`` library), which addresses a delivery may reach, the URL's form, and the retries' back-off."""

from __future__ import annotations

import base64
import ipaddress
import random
from datetime import UTC, datetime

import pytest
from cfv.domain import webhooks as rules
from cfv.domain.webhooks import (
    SECRET_PREFIX,
    address_refusal,
    literal_address,
    new_secret,
    retry_delay,
    secret_key,
    sign,
    url_refusal,
)
from cfv.gateway.limits import DEFINITIONS, READS, endpoint_class
from standardwebhooks import Webhook as Verifier


def test_secrets_are_standard_webhooks_secrets_and_fresh_each_time() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert len(secret_key(secret)) == 32
        assert base64.b64encode(secret_key(secret)).decode() == secret.removeprefix(SECRET_PREFIX)


def test_signatures_verify_with_the_reference_library_and_nothing_else_does() -> None:
    secret, body = new_secret(), b'{"id":"e1","data":{"value":"\xc3\xa9"}}'
    now = int(datetime.now(UTC).timestamp())
    signature = sign(secret, "e1", now, body)
    assert signature.startswith("v1,")
    headers = {"webhook-id": "e1", "webhook-timestamp": str(now), "webhook-signature": signature}
    assert Verifier(secret).verify(body, headers) == {"id": "e1", "data": {"value": "é"}}
    assert Verifier(secret).sign("e1", datetime.fromtimestamp(now, UTC), body) == signature
    for changed in ({**headers, "webhook-id": "e2"}, {**headers, "webhook-timestamp": str(now - 1)}):
        with pytest.raises(Exception, match="signature"):
            Verifier(secret).verify(body, changed)
    with pytest.raises(Exception, match="signature"):
        Verifier(new_secret()).verify(body, headers)


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("10.0.0.8", "private"), ("172.16.3.4", "private"),
    ("192.168.1.1", "private"), ("fd12::1", "private"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.5", "multicast"), ("ff02::1", "multicast"), ("::", "unspecified"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (an address to refuse, not one to bind)
    ("240.0.0.1", "reserved"), ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:127.0.0.1", "loopback"), ("100.64.0.1", "not a public"),
    ("192.0.2.1", "private"), ("198.18.0.1", "private"),
    ("2002:7f00:1::1", "loopback"), ("2002:a00:8::1", "private"),  # 6to4, carrying 127.0.0.1 and 10.0.0.8
])
def test_non_public_addresses_are_refused_with_the_reason(address: str, why: str) -> None:
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal is not None and why in refusal, (address, refusal)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946",
                                     "::ffff:93.184.216.34"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(("url", "refused"), [
    ("https://example.com/hook", None), ("http://example.com:8080/a?b=c", None),
    ("ftp://example.com/", "only http and https"), ("file:///etc/passwd", "only http and https"),
    ("https:///path", "no host"), ("https://user:secret@example.com/", "credentials"),
    ("http://example.com:99999/", "not a valid URL"), ("example.com/hook", "only http and https"),
])
def test_url_form(url: str, refused: str | None) -> None:
    refusal = url_refusal(url)
    assert (refusal is None) if refused is None else (refusal is not None and refused in refusal), refusal


def test_literal_addresses() -> None:
    assert literal_address("[::1]") == ipaddress.ip_address("::1")
    assert literal_address("10.1.2.3") == ipaddress.ip_address("10.1.2.3")
    assert literal_address("example.com") is None and literal_address("2130706433") is None


def test_retries_back_off_exponentially_with_jitter_up_to_the_ceiling() -> None:
    rng = random.Random(7)
    for failures, base in ((1, 5.0), (2, 10.0), (3, 20.0), (10, 600.0), (100, 600.0)):
        delays = [retry_delay(failures, first=5.0, ceiling=600.0, rng=rng) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays), (failures, min(delays), max(delays))
        assert max(delays) - min(delays) > base / 4  # jittered, not all alike


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/api/v1/webhooks", DEFINITIONS), ("PATCH", "/api/v1/webhooks/3", DEFINITIONS),
    ("DELETE", "/api/v1/webhooks/3", DEFINITIONS), ("POST", "/api/v1/webhooks/3/deliveries/9/retry", DEFINITIONS),
    ("GET", "/api/v1/webhooks", READS), ("GET", "/api/v1/webhooks/3/deliveries", READS),
])
def test_managing_webhooks_counts_as_administration(method: str, path: str, expected: str) -> None:
    assert endpoint_class(method, path) == expected


def test_a_sealed_secret_opens_with_its_key_and_no_other() -> None:
    key = rules.new_secret_key()
    secret = rules.new_secret()
    sealed = rules.SecretBox([key]).seal(secret)
    assert sealed.startswith(rules.SEALED_PREFIX) and secret.removeprefix(rules.SECRET_PREFIX) not in sealed
    assert sealed != rules.SecretBox([key]).seal(secret)  # a fresh IV each time
    assert rules.SecretBox([key]).open(sealed) == secret
    with pytest.raises(rules.SecretUnavailable, match="no key"):
        rules.SecretBox([rules.new_secret_key()]).open(sealed)
    with pytest.raises(rules.SecretUnavailable, match="CFV_SECRET_KEYS is empty"):
        rules.SecretBox([]).open(sealed)


def test_keys_rotate_newest_first() -> None:
    old, new = rules.new_secret_key(), rules.new_secret_key()
    secret = rules.new_secret()
    under_old = rules.SecretBox([old]).seal(secret)
    both = rules.SecretBox.from_setting(f" {new} , {old} ,")
    assert both.open(under_old) == secret
    resealed = both.reseal(under_old)
    assert rules.SecretBox([new]).open(resealed) == secret
    with pytest.raises(rules.SecretUnavailable):
        rules.SecretBox([old]).open(resealed)


def test_a_secret_stored_before_sealing_opens_as_it_is_and_reseals() -> None:
    secret = rules.new_secret()
    key = rules.new_secret_key()
    assert rules.SecretBox([]).open(secret) == secret
    assert rules.SecretBox([key]).open(rules.SecretBox([key]).reseal(secret)) == secret


def test_without_a_key_nothing_is_sealed() -> None:
    box = rules.SecretBox.from_setting("")
    assert not box.can_seal
    with pytest.raises(rules.SecretUnavailable, match="set CFV_SECRET_KEYS"):
        box.seal(rules.new_secret())
    with pytest.raises(ValueError, match="Fernet key"):
        rules.SecretBox.from_setting("not-a-key")
