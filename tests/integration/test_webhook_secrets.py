"""Webhooks' signing secrets at rest: sealed with ``CFV_SECRET_KEYS`` (Fernet), never stored as they are; keys that
rotate without a gap (`cfv secrets reseal`); secrets stored before sealing began; a gateway without a key; a
delivery process without the key that sealed a secret (its events wait, nothing counts as failed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from cfv.cli import main
from cfv.domain.webhooks import SecretBox, SecretUnavailable, new_secret_key
from cfv.settings import Settings
from cfv.store import webhooks as stored
from click.testing import CliRunner, Result
from pydantic import SecretStr
from standardwebhooks.exceptions import WebhookVerificationError
from support import Workspace, captured_logs, running_stack
from support.kantata import item, write
from test_webhooks import WEBHOOKS, Receiver, create_webhook, delivering, receiving, verified


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


def keyed(settings: Settings, *keys: str) -> Settings:
    """``settings`` with ``CFV_SECRET_KEYS`` set to ``keys`` (none: empty), quick retries and loopback allowed."""
    return settings.model_copy(update={"secret_keys": SecretStr(",".join(keys)), "webhook_allow_private": True,
                                       "webhook_retry_first": 0.05, "webhook_poll_interval": 0.1})


async def stored_secret(db: asyncpg.Connection[Any], webhook_id: str) -> str:
    secret: str = await db.fetchval("SELECT secret FROM webhooks WHERE id = $1", int(webhook_id))
    return secret


async def test_a_secret_is_stored_sealed_and_signs_the_deliveries(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], receiver: Receiver) -> None:
    key = new_secret_key()
    async with running_stack(keyed(settings, key)) as stack, delivering(keyed(settings, key)):
        webhook = await create_webhook(stack, workspace, receiver.url)
        secret = webhook["secret"]
        kept = await stored_secret(db, webhook["id"])
        assert kept.startswith("fernet:") and secret not in kept and secret.removeprefix("whsec_") not in kept
        assert SecretBox([key]).open(kept) == secret
        with pytest.raises(SecretUnavailable):
            SecretBox([new_secret_key()]).open(kept)
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        assert (await write(stack, workspace, item(field, 5, subject_id=1)))[0] == 200
        [(headers, body)] = await _received(receiver, 1)
        assert verified(secret, headers, body)["data"]["after"]["value"] == 5

        # A rotation answers the new secret once and stores it sealed; the deliveries are signed with it.
        status, answer, _ = await stack.request("PATCH", f"{WEBHOOKS}/{webhook['id']}", workspace,
                                                json={"rotate_secret": True})
        assert status == 200, answer
        rotated = answer["webhooks"][webhook["id"]]["secret"]
        assert rotated != secret
        kept = await stored_secret(db, webhook["id"])
        assert kept.startswith("fernet:") and rotated.removeprefix("whsec_") not in kept
        assert (await write(stack, workspace, item(field, 6, subject_id=1)))[0] == 200
        headers, body = (await _received(receiver, 2))[-1]
        assert verified(rotated, headers, body)["data"]["after"]["value"] == 6


async def _received(receiver: Receiver, count: int) -> list[tuple[dict[str, str], bytes]]:
    await receiver.wait_received(count)
    return receiver.received


async def test_without_a_key_webhooks_cannot_be_made_or_rotated(
        settings: Settings, workspace: Workspace, receiver: Receiver) -> None:
    key = new_secret_key()
    async with running_stack(keyed(settings, key), worker=False, relay=False) as stack:
        webhook = await create_webhook(stack, workspace, receiver.url)
    async with running_stack(keyed(settings), worker=False, relay=False) as keyless:
        for method, path, body in (("POST", WEBHOOKS, {"webhook": {"url": receiver.url,
                                                                   "event_types": ["cfv.value.created.v1"]}}),
                                   ("PATCH", f"{WEBHOOKS}/{webhook['id']}", {"rotate_secret": True})):
            status, answer, headers = await keyless.request(method, path, workspace, json=body)
            assert status == 503, answer
            [error] = answer["errors"]
            assert error["type"] == "unavailable" and "CFV_SECRET_KEYS" in error["message"], error
            assert int(headers["Retry-After"]) > 0
        # What needs no new secret still works.
        status, answer, _ = await keyless.request("PATCH", f"{WEBHOOKS}/{webhook['id']}", workspace,
                                                  json={"description": "kept"})
        assert status == 200, answer
        assert "secret" not in answer["webhooks"][webhook["id"]]


def test_settings_refuse_a_malformed_key_without_echoing_it(settings: Settings) -> None:
    with pytest.raises(ValueError, match="key 2 of CFV_SECRET_KEYS is not a Fernet key") as refused:
        Settings(secret_keys=SecretStr(f"{new_secret_key()},not-a-key-but-secret"))
    assert "not-a-key-but-secret" not in str(refused.value)


async def test_keys_rotate_without_a_gap_and_old_secrets_are_sealed(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], receiver: Receiver,
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = new_secret_key(), new_secret_key()
    async with running_stack(keyed(settings, old), worker=True, relay=True) as stack:
        sealed_webhook = await create_webhook(stack, workspace, receiver.url)
        clear_webhook = await create_webhook(stack, workspace, receiver.url)
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        # One secret as a version of cfv before sealing kept it: as it is.
        await db.execute("UPDATE webhooks SET secret = $2 WHERE id = $1", int(clear_webhook["id"]),
                         clear_webhook["secret"])

        # A delivery process whose keys do not open the sealed secret sends nothing to that webhook and counts
        # nothing as failed; it says so once. The secret kept as it was still signs.
        with captured_logs() as logged:
            async with delivering(keyed(settings, new)):
                assert (await write(stack, workspace, item(field, 1, subject_id=1)))[0] == 200
                await receiver.wait_received(1)
                await asyncio.sleep(0.5)
        assert len(receiver.received) == 1
        headers, body = receiver.received[0]
        verified(clear_webhook["secret"], headers, body)
        assert await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1",
                                 int(sealed_webhook["id"])) == 0
        assert await db.fetchval("SELECT consecutive_failures FROM webhooks WHERE id = $1",
                                 int(sealed_webhook["id"])) == 0
        complaints = [e for e in logged if e["event"] == "cannot sign a webhook's deliveries, which wait"]
        assert [c["webhook_id"] for c in complaints] == [int(sealed_webhook["id"])], complaints

        # The new key goes first, the old one stays after it; `cfv secrets reseal` seals both secrets with the
        # new key, after which the old key can go.
        monkeypatch.setenv("CFV_DATABASE_URL", database_url)
        monkeypatch.setenv("CFV_SECRET_KEYS", f"{new},{old}")
        monkeypatch.setenv("CFV_LOG_LEVEL", "WARNING")
        result: Result = await asyncio.to_thread(CliRunner().invoke, main, ["secrets", "reseal"])
        assert result.exit_code == 0, (result.output, result.exception)
        assert "2 webhook secret(s) sealed" in result.output
        for webhook in (sealed_webhook, clear_webhook):
            kept = await stored_secret(db, webhook["id"])
            assert kept.startswith("fernet:")
            assert SecretBox([new]).open(kept) == webhook["secret"]

        async with delivering(keyed(settings, new)):
            await receiver.wait_received(2)  # the event that waited for the first webhook, now
            headers, body = receiver.received[-1]
            assert verified(sealed_webhook["secret"], headers, body)["data"]["after"]["value"] == 1
            assert (await write(stack, workspace, item(field, 2, subject_id=1)))[0] == 200
            await receiver.wait_received(4)
        signers = [_signer(headers, body, sealed_webhook["secret"], clear_webhook["secret"])
                   for headers, body in receiver.received]
        values = [orjson.loads(body)["data"]["after"]["value"] for _, body in receiver.received]
        assert sorted(zip(signers, values, strict=True)) == [("clear", 1), ("clear", 2), ("sealed", 1), ("sealed", 2)]


def _signer(headers: dict[str, str], body: bytes, sealed: str, clear: str) -> str:
    """Which of the two secrets signed the delivery."""
    for name, secret in (("sealed", sealed), ("clear", clear)):
        try:
            verified(secret, headers, body)
        except WebhookVerificationError:
            continue
        return name
    raise AssertionError("signed by neither secret")


async def test_reseal_changes_nothing_when_a_secret_cannot_be_opened(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], receiver: Receiver) -> None:
    first, stranger = new_secret_key(), new_secret_key()
    async with running_stack(keyed(settings, first), worker=False, relay=False) as stack:
        webhook = await create_webhook(stack, workspace, receiver.url)
    before = await stored_secret(db, webhook["id"])
    with pytest.raises(SecretUnavailable, match="no key of CFV_SECRET_KEYS opens"):
        await stored.reseal_secrets(db, SecretBox([stranger]).reseal)
    assert await stored_secret(db, webhook["id"]) == before
