"""Commands published straight to RabbitMQ must prove who sent them (issue 5), against the real broker and database.

Every message on ``cfv.commands`` carries ``cfv-key`` / ``cfv-signature`` (Ed25519 over the body, with a key derived
from an API key). A message without a valid signature is never applied: it is dead-lettered, the operations it
names are recorded failed (``unauthenticated``) unless they already exist, and its ``reply_to`` hears so. A validly
signed message acts as the key that signed it, checked in the apply transaction exactly like an HTTP request
made with that key (unknown, revoked or expired key, deactivated user, another workspace's key: ``unauthenticated``;
a field's ``write_access`` not reached: ``forbidden``); ``actor`` in the message is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from cfv.broker import topology
from cfv.domain.credentials import hash_key
from cfv.settings import Settings
from cfv.store import accounts
from cfv.store.accounts import IssuedKey, issue_key
from cfv.store.queries import query
from cfv_schemas.signing import KEY_HEADER, SIGNATURE_HEADER, sign_message
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support import Stack, Workspace, running_stack, wait_for
from support.pipeline import broker_channel, command, envelope, number_field, worker_task, write_async

OPERATIONS = "/api/v1/operations"
VALUES = "/api/v1/custom_field_values"
ASYNC = {"Prefer": "respond-async"}


# --- helpers ------------------------------------------------------------------------------------------------


class Replies:
    """An exclusive reply queue: what workers answer to the ``reply_to`` of the messages we publish."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received: dict[str, list[Any]] = {}

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.received.setdefault(message.correlation_id or "", []).append(orjson.loads(message.body))

    async def wait(self, correlation_id: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The (first) reply carrying ``correlation_id``: the outcomes of the message's commands."""
        async def arrived() -> bool:
            return correlation_id in self.received
        await wait_for(arrived, timeout, f"a reply with correlation id {correlation_id}")
        reply = self.received[correlation_id][0]
        assert isinstance(reply, list), reply
        return reply


@contextlib.asynccontextmanager
async def replies_on(channel: aio_pika.abc.AbstractChannel) -> AsyncIterator[Replies]:
    """A reply queue consumed for the duration of the block."""
    # The worker replies only to a queue of the publishing user (user_id, checked by RabbitMQ): guest's.
    queue = await channel.declare_queue(f"guest.replies.{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
    replies = Replies(queue.name)
    await queue.consume(replies.on_message, no_ack=True)
    yield replies


async def publish(channel: aio_pika.abc.AbstractChannel, body: bytes, headers: dict[str, Any], routing_key: str,
                  **properties: Any) -> None:
    """Publish ``body`` to ``cfv.commands`` with exactly ``headers`` (persistent, confirmed), as user guest."""
    if "reply_to" in properties:
        properties.setdefault("user_id", "guest")
    exchange = await channel.get_exchange(topology.COMMANDS_EXCHANGE)
    await exchange.publish(aio_pika.Message(body, content_type="application/json", headers=headers,
                                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, **properties),
                           routing_key=routing_key, mandatory=True)


async def publish_signed(channel: aio_pika.abc.AbstractChannel, api_key: str, *commands: dict[str, Any],
                         routing_key: str, replies: Replies | None = None,
                         correlation_id: str | None = None) -> None:
    """Publish ``commands`` in one envelope, signed with ``api_key``."""
    body = envelope(*commands)
    properties: dict[str, Any] = {"message_id": commands[0]["id"]}
    if replies is not None:
        properties.update(reply_to=replies.name, correlation_id=correlation_id or commands[0]["id"])
    await publish(channel, body, sign_message(body, api_key), routing_key, **properties)


def write_command(workspace_id: int, field_id: int, subject_id: int, value: Any, **extra: Any) -> dict[str, Any]:
    """A ``write_values`` command of one Story value, with a fresh id."""
    return command(workspace_id, field_id, subject_id, value, **extra)


def register_command(workspace_id: int, *placements: tuple[str, int, str]) -> dict[str, Any]:
    """A ``register_subjects`` command placing (subject_type, subject_id, project)."""
    return {"type": "register_subjects", "id": str(uuid.uuid4()), "workspace_id": workspace_id,
            "accepted_at": datetime.now(UTC).isoformat(),
            "subjects": [{"subject_type": t, "subject_id": i, "project": p} for t, i, p in placements]}


def delete_field_command(workspace_id: int, field_id: int) -> dict[str, Any]:
    """A ``delete_field`` command."""
    return {"type": "delete_field", "id": str(uuid.uuid4()), "workspace_id": workspace_id,
            "accepted_at": datetime.now(UTC).isoformat(), "custom_field_id": field_id}


def unissued_key() -> str:
    """An API key of the right shape that nobody issued."""
    return f"cfv_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


async def new_user(db: asyncpg.Connection[Any], workspace_id: int, role: str, name: str) -> int:
    """A person of the workspace with an account role; its id."""
    row = await db.fetchrow(query("create_user"), workspace_id, "person", name, f"{name.lower()}@example.com", role)
    assert row is not None
    return int(row["id"])


async def user_key(db: asyncpg.Connection[Any], workspace: Workspace, role: str, name: str, *,
                   expires_at: datetime | None = None) -> tuple[int, IssuedKey]:
    """A new user of ``workspace`` with ``role``, and a key of it."""
    user_id = await new_user(db, workspace.id, role, name)
    return user_id, await issue_key(db, workspace.id, user_id=user_id, name=name, expires_at=expires_at)


def as_key(workspace: Workspace, key: IssuedKey) -> Workspace:
    """``workspace`` seen through another of its keys (for HTTP requests)."""
    return Workspace(workspace.id, workspace.slug, key.secret)


async def key_id_of(db: asyncpg.Connection[Any], secret: str) -> int:
    """The id of the key ``secret``."""
    found = await db.fetchval("SELECT id FROM api_keys WHERE secret_hash = $1", hash_key(secret))
    assert found is not None
    return int(found)


async def operation(stack: Stack, workspace: Workspace, operation_id: uuid.UUID | str) -> tuple[int, Any]:
    """GET the operation as ``workspace``: (status, body)."""
    status, body, _ = await stack.request("GET", f"{OPERATIONS}/{operation_id}", workspace)
    return status, body


async def settled(stack: Stack, workspace: Workspace, operation_id: uuid.UUID | str,
                  timeout: float = 20.0) -> dict[str, Any]:
    """Poll the operation (as ``workspace``) until it is no longer pending; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, body = await operation(stack, workspace, operation_id)
        if status == 200 and body["status"] != "pending":
            return dict(body)
        assert status in (200, 404), body  # 404: not recorded yet
        assert asyncio.get_running_loop().time() < deadline, f"operation {operation_id}: {status} {body}"
        await asyncio.sleep(0.05)


async def settled_in_db(db: asyncpg.Connection[Any], operation_ids: list[uuid.UUID],
                        timeout: float = 30.0) -> dict[uuid.UUID, dict[str, Any]]:
    """Wait until every operation is recorded and not pending; return each one's outcome."""
    rows: list[asyncpg.Record] = []

    async def done() -> bool:
        nonlocal rows
        rows = await db.fetch("SELECT id, status, outcome FROM operations WHERE id = ANY($1::uuid[]) "
                              "AND status <> 'pending'", operation_ids)
        return len(rows) == len(operation_ids)
    await wait_for(done, timeout, f"{len(operation_ids)} operations to settle")
    return {r["id"]: r["outcome"] for r in rows}


def error_types(outcome: dict[str, Any]) -> list[str]:
    return [e["type"] for e in outcome["errors"]]


async def dead_letters(channel: aio_pika.abc.AbstractChannel) -> int:
    queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    return count


async def take_dead_letters(channel: aio_pika.abc.AbstractChannel, count: int) -> list[
        aio_pika.abc.AbstractIncomingMessage]:
    """Wait for ``count`` dead letters, and take them off the queue."""
    async def enough() -> bool:
        return await dead_letters(channel) >= count
    await wait_for(enough, 10, f"{count} dead letters")
    queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def shard_messages(channel: aio_pika.abc.AbstractChannel, settings: Settings) -> int:
    total = 0
    for n in range(settings.command_shards):
        queue = await channel.declare_queue(topology.shard_queue(n), passive=True)
        total += queue.declaration_result.message_count or 0
    return total


async def take_queued_message(settings: Settings) -> aio_pika.abc.AbstractIncomingMessage:
    """Take the (only) command message waiting in the shard queues off them, as a consumer would (quorum queues
    with a single active consumer refuse basic.get)."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1)
        arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        consumers = []
        for n in range(settings.command_shards):
            queue = await channel.declare_queue(topology.shard_queue(n), passive=True)
            consumers.append((queue, await queue.consume(arrived.put)))
        message = await asyncio.wait_for(arrived.get(), 10)
        await message.ack()
        for queue, tag in consumers:
            await queue.cancel(tag)
        assert arrived.empty()
        return message
    finally:
        await connection.close()


async def nothing_written(db: asyncpg.Connection[Any], workspace_id: int | None = None) -> None:
    rows = await db.fetch("SELECT workspace_id, subject_id, value FROM value_versions "
                          "WHERE $1::bigint IS NULL OR workspace_id = $1", workspace_id)
    assert rows == [], [tuple(r) for r in rows]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE ($1::bigint IS NULL OR workspace_id = $1) "
                             "AND type LIKE 'cfv.value.%'", workspace_id) == 0  # (the fields' own events aside)


# --- messages without a valid signature --------------------------------------------------------------------

Forgery = Callable[[bytes, str], tuple[bytes, dict[str, Any]]]


def _unsigned(body: bytes, _: str) -> tuple[bytes, dict[str, Any]]:
    return body, {}


def _altered_after_signing(body: bytes, key: str) -> tuple[bytes, dict[str, Any]]:
    altered = body.replace(b'"value":1111', b'"value":2222')
    assert altered != body
    return altered, sign_message(body, key)


def _garbage_signature(body: bytes, key: str) -> tuple[bytes, dict[str, Any]]:
    return body, {KEY_HEADER: sign_message(body, key)[KEY_HEADER], SIGNATURE_HEADER: "%%% not a signature %%%"}


def _garbage_key(body: bytes, key: str) -> tuple[bytes, dict[str, Any]]:
    return body, {KEY_HEADER: "AAAA", SIGNATURE_HEADER: sign_message(body, key)[SIGNATURE_HEADER]}


def _signature_by_another_key(body: bytes, key: str) -> tuple[bytes, dict[str, Any]]:
    # The workspace's public key, with a signature made by some other private key.
    return body, {KEY_HEADER: sign_message(body, key)[KEY_HEADER],
                  SIGNATURE_HEADER: sign_message(body, Ed25519PrivateKey.generate())[SIGNATURE_HEADER]}


def _headers_not_text(body: bytes, _: str) -> tuple[bytes, dict[str, Any]]:
    return body, {KEY_HEADER: 12, SIGNATURE_HEADER: 34}


def _signature_only(body: bytes, key: str) -> tuple[bytes, dict[str, Any]]:
    return body, {SIGNATURE_HEADER: sign_message(body, key)[SIGNATURE_HEADER]}


REFUSED: dict[str, Forgery] = {
    "unsigned": _unsigned,
    "altered_after_signing": _altered_after_signing,
    "garbage_signature": _garbage_signature,
    "garbage_key": _garbage_key,
    "signature_by_another_key": _signature_by_another_key,
    "headers_not_text": _headers_not_text,
    "signature_without_key": _signature_only,
}


@pytest.mark.parametrize("forgery", list(REFUSED))
async def test_a_message_without_a_valid_signature_is_refused(forgery: str, settings: Settings,
                                                              workspace: Workspace,
                                                              db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        operation_id = uuid.uuid4()
        body, headers = REFUSED[forgery](envelope(write_command(workspace.id, field_id, 7, 1111,
                                                                command_id=operation_id)), workspace.key)
        await publish(channel, body, headers, str(workspace.id), message_id=str(operation_id),
                      reply_to=replies.name, correlation_id=f"corr-{forgery}")

        [reply] = await replies.wait(f"corr-{forgery}")
        assert reply["id"] == str(operation_id) and reply["status"] == "failed", reply
        assert error_types(reply) == ["unauthenticated"], reply
        assert reply["values"] == []

        [letter] = await take_dead_letters(channel, 1)
        assert letter.message_id == str(operation_id) and letter.body == body
        deaths = letter.headers["x-death"]
        assert isinstance(deaths, list) and len(deaths) == 1 and isinstance(deaths[0], dict), deaths
        assert deaths[0]["reason"] == "rejected" and deaths[0]["count"] == 1, deaths

        status, answer = await operation(stack, workspace, operation_id)
        assert status == 200, answer
        assert answer["status"] == "failed" and answer["http_status"] == 401, answer
        assert [e["type"] for e in answer["errors"]] == ["unauthenticated"], answer

        # Never applied: no value, no version, no event; the listing shows nothing.
        await nothing_written(db)
        status, listed, _ = await stack.request(
            "GET", f"{VALUES}?subject_type=Story&with_custom_field_id={field_id}", workspace)
        assert status == 200 and listed["count"] == 0, listed
        assert await shard_messages(channel, settings) == 0


async def test_a_message_signed_by_a_key_nobody_issued_is_refused(settings: Settings, workspace: Workspace,
                                                                  db: asyncpg.Connection[Any]) -> None:
    """A well-formed signature by an unknown key is checked where keys are: in the apply transaction (a key is
    unknown, revoked or expired there, race-free). The command fails ``unauthenticated``, nothing is written, the
    reply says so and the operation is failed; the message itself is settled (acked), not dead-lettered."""
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        stranger = write_command(workspace.id, field_id, 7, 1111)
        await publish_signed(channel, unissued_key(), stranger, routing_key=str(workspace.id), replies=replies)
        [reply] = await replies.wait(stranger["id"])
        assert reply["id"] == stranger["id"] and reply["status"] == "failed", reply
        assert error_types(reply) == ["unauthenticated"], reply

        answer = await settled(stack, workspace, stranger["id"])
        assert answer["status"] == "failed" and answer["http_status"] == 401, answer
        assert [e["type"] for e in answer["errors"]] == ["unauthenticated"]
        await nothing_written(db)
        assert await shard_messages(channel, settings) == 0
        assert await dead_letters(channel) == 0


# --- valid signatures -------------------------------------------------------------------------------------


async def test_a_signed_message_acts_as_its_key_whatever_actor_says(settings: Settings, workspace: Workspace,
                                                                   db: asyncpg.Connection[Any]) -> None:
    first_key = await key_id_of(db, workspace.key)
    integration = await issue_key(db, workspace.id, name="integration")
    assert integration.id != first_key
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        # The integration's key claims to be the first key ("key:1" style), and the first key claims the other.
        forged = write_command(workspace.id, field_id, 7, 5, actor=f"key:{first_key}")
        forged_back = write_command(workspace.id, field_id, 8, 6, actor=f"key:{integration.id}")
        no_actor = write_command(workspace.id, field_id, 9, 7)
        del no_actor["actor"]
        await publish_signed(channel, integration.secret, forged, routing_key=str(workspace.id), replies=replies)
        await publish_signed(channel, workspace.key, forged_back, routing_key=str(workspace.id), replies=replies)
        await publish_signed(channel, integration.secret, no_actor, routing_key=str(workspace.id), replies=replies)

        expected = {forged["id"]: (integration.id, "7", 5), forged_back["id"]: (first_key, "8", 6),
                    no_actor["id"]: (integration.id, "9", 7)}
        for operation_id, (signer, subject, value) in expected.items():
            [reply] = await replies.wait(operation_id)
            assert reply["status"] == "succeeded" and reply["id"] == operation_id, reply
            [written] = reply["values"]
            assert (written["setter"], written["subject_id"], written["value"]) == (f"key:{signer}", subject, value)

            answer = await settled(stack, workspace, operation_id)
            assert answer["status"] == "succeeded", answer
            [shown] = answer["result"]["custom_field_values"].values()
            assert shown["setter"] == f"key:{signer}"

        rows = await db.fetch("SELECT subject_id, setter FROM value_versions ORDER BY subject_id")
        assert [tuple(r) for r in rows] == [("7", f"key:{integration.id}"), ("8", f"key:{first_key}"),
                                            ("9", f"key:{integration.id}")]
        events = await db.fetch("SELECT event FROM outbox WHERE type LIKE 'cfv.value.%' ORDER BY position")
        assert [e["event"]["data"]["setter"] for e in events] == [
            f"key:{integration.id}", f"key:{first_key}", f"key:{integration.id}"]


async def test_a_key_of_one_workspace_cannot_sign_for_another(settings: Settings, workspace: Workspace,
                                                              other_workspace: Workspace,
                                                              db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        theirs = await number_field(stack, other_workspace)
        ours = await number_field(stack, workspace)
        intruder = write_command(other_workspace.id, theirs, 7, 666)
        deleter = delete_field_command(other_workspace.id, theirs)
        placer = register_command(other_workspace.id, ("Story", 7, "100"))
        for cmd in (intruder, deleter, placer):
            await publish_signed(channel, workspace.key, cmd, routing_key=str(other_workspace.id), replies=replies)
        for cmd in (intruder, deleter, placer):
            [reply] = await replies.wait(cmd["id"])
            assert reply["status"] == "failed" and error_types(reply) == ["unauthenticated"], reply
            answer = await settled(stack, other_workspace, cmd["id"])
            assert answer["status"] == "failed" and answer["http_status"] == 401, answer
            # The signer's own workspace does not see the other's operation.
            status, body = await operation(stack, workspace, cmd["id"])
            assert status == 404, body

        # A command of its own workspace naming the other's field: that field does not exist for it.
        stray = write_command(workspace.id, theirs, 7, 667)
        stray_delete = delete_field_command(workspace.id, theirs)
        for cmd in (stray, stray_delete):
            await publish_signed(channel, workspace.key, cmd, routing_key=str(workspace.id), replies=replies)
            [reply] = await replies.wait(cmd["id"])
            assert reply["status"] == "failed" and error_types(reply) == ["not_found"], reply

        await nothing_written(db)
        assert await db.fetchval("SELECT deleted_at FROM custom_fields WHERE id = $1", theirs) is None
        assert await db.fetchval("SELECT count(*) FROM subject_projects") == 0
        status, field, _ = await stack.request("GET", f"/api/v1/custom_fields/{theirs}", other_workspace)
        assert status == 200, field
        assert ours != theirs


@pytest.mark.parametrize("state", ["expired", "deactivated_user", "revoked"])
async def test_an_invalid_key_signs_nothing(state: str, settings: Settings, workspace: Workspace,
                                            db: asyncpg.Connection[Any]) -> None:
    expires_at = datetime.now(UTC) - timedelta(minutes=1) if state == "expired" else None
    user_id, key = await user_key(db, workspace, "account_admin", f"Ada{state}", expires_at=expires_at)
    if state == "deactivated_user":
        await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", user_id)
    elif state == "revoked":
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        cmds = [write_command(workspace.id, field_id, 7, 1), delete_field_command(workspace.id, field_id),
                register_command(workspace.id, ("Story", 7, "100"))]
        for cmd in cmds:
            await publish_signed(channel, key.secret, cmd, routing_key=str(workspace.id), replies=replies)
        for cmd in cmds:
            [reply] = await replies.wait(cmd["id"])
            assert reply["status"] == "failed" and error_types(reply) == ["unauthenticated"], (state, reply)
            assert reply["errors"][0]["field"] == "credentials", reply
            answer = await settled(stack, workspace, cmd["id"])
            assert answer["http_status"] == 401, answer
        await nothing_written(db)
        assert await db.fetchval("SELECT deleted_at FROM custom_fields WHERE id = $1", field_id) is None
        assert await db.fetchval("SELECT count(*) FROM subject_projects") == 0
        # Over HTTP the key is refused too.
        status, body, _ = await stack.request("GET", "/api/v1/custom_fields", as_key(workspace, key))
        assert status == 401, body


# --- a forged message naming a pending operation -----------------------------------------------------------


Attack = Callable[[Workspace, Workspace, int, int, uuid.UUID], tuple[bytes, dict[str, Any], str]]


def _attack_body(workspace_id: int, field_id: int, operation_id: uuid.UUID, v: int = 1) -> bytes:
    return envelope(write_command(workspace_id, field_id, 7, 666, command_id=operation_id), v=v)


def _signed(body: bytes, api_key: str, routing_key: int) -> tuple[bytes, dict[str, Any], str]:
    return body, sign_message(body, api_key), str(routing_key)


ATTACKS: dict[str, Attack] = {
    "unsigned": lambda ws, other, field, other_field, op: (_attack_body(ws.id, field, op), {}, str(ws.id)),
    "unsigned_unknown_version": lambda ws, other, field, other_field, op: (
        _attack_body(ws.id, field, op, v=99), {}, str(ws.id)),
    "unsigned_unknown_version_in_other_workspace": lambda ws, other, field, other_field, op: (
        _attack_body(other.id, other_field, op, v=99), {}, str(other.id)),
    "unsigned_misrouted": lambda ws, other, field, other_field, op: (
        _attack_body(ws.id, field, op), {}, str(other.id)),
    "altered_after_signing": lambda ws, other, field, other_field, op: (
        *_altered_after_signing(_attack_body(ws.id, field, op).replace(b'"value":666', b'"value":1111'), ws.key),
        str(ws.id)),
    "signed_by_unissued_key": lambda ws, other, field, other_field, op: _signed(
        _attack_body(ws.id, field, op), unissued_key(), ws.id),
    "signed_by_other_workspace_for_this_one": lambda ws, other, field, other_field, op: _signed(
        _attack_body(ws.id, field, op), other.key, ws.id),
    "other_workspace_own_valid_command": lambda ws, other, field, other_field, op: _signed(
        _attack_body(other.id, other_field, op), other.key, other.id),
    "other_workspace_misrouted": lambda ws, other, field, other_field, op: _signed(
        _attack_body(ws.id, field, op), other.key, other.id),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_a_forged_message_cannot_settle_a_pending_operation(attack: str, settings: Settings,
                                                                  workspace: Workspace, other_workspace: Workspace,
                                                                  db: asyncpg.Connection[Any]) -> None:
    """A pending operation (accepted over HTTP, its message not applied yet) named by a message that is not its
    own: the forged message is refused or fails, but the operation stays pending, and once its real message is
    applied it succeeds with the real write.

    The real message is held back (taken off its queue and published again afterwards) so that the forged one
    is certainly processed while the operation is pending, whatever queue it is routed to.
    """
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        other_field = await number_field(stack, other_workspace)
        operation_id = await write_async(stack, workspace, field_id, 7, 42)
        status, pending = await operation(stack, workspace, operation_id)
        assert status == 200 and pending["status"] == "pending", pending

        held = await take_queued_message(settings)
        assert str(operation_id).encode() in held.body

        body, headers, routing_key = ATTACKS[attack](workspace, other_workspace, field_id, other_field,
                                                          operation_id)
        await publish(channel, body, headers, routing_key, message_id=str(operation_id), reply_to=replies.name,
                      correlation_id="forged")
        async with worker_task(settings):
            await replies.wait("forged")
            status, still = await operation(stack, workspace, operation_id)
            assert status == 200 and still["status"] == "pending", (attack, still)

            await publish(channel, held.body, dict(held.headers), held.routing_key or str(workspace.id),
                          message_id=held.message_id)
            done = await settled(stack, workspace, operation_id)
        assert done["status"] == "succeeded", (attack, done)
        [value] = done["result"]["custom_field_values"].values()
        assert value["value"] == 42 and value["setter"] == f"key:{await key_id_of(db, workspace.key)}"
    rows = await db.fetch("SELECT workspace_id, subject_id, value FROM value_versions")
    # Nothing of the forged message was applied anywhere: in particular another workspace's command reusing the
    # pending operation's id is refused (the id is the first workspace's), not applied under an id it cannot poll.
    assert [tuple(r) for r in rows] == [(workspace.id, "7", 42)], attack


async def test_forged_messages_queued_behind_a_pending_write_do_not_fail_it(
        settings: Settings, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    """The simple order: the real write is queued, forged messages naming its operation are queued behind it (on
    the same stream), then a worker starts: the real write succeeds."""
    same_stream = [name for name in ATTACKS if not name.endswith(("misrouted", "own_valid_command",
                                                                   "in_other_workspace"))]
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        other_field = await number_field(stack, other_workspace)
        operation_id = await write_async(stack, workspace, field_id, 7, 42)
        for name in same_stream:
            body, headers, routing_key = ATTACKS[name](workspace, other_workspace, field_id, other_field,
                                                              operation_id)
            await publish(channel, body, headers, routing_key, reply_to=replies.name, correlation_id=name)
        async with worker_task(settings):
            for name in same_stream:
                await replies.wait(name)
            done = await settled(stack, workspace, operation_id)
        assert done["status"] == "succeeded", done
        [value] = done["result"]["custom_field_values"].values()
        assert value["value"] == 42
    rows = await db.fetch("SELECT subject_id, value FROM value_versions")
    assert [tuple(r) for r in rows] == [("7", 42)]


async def test_another_workspace_reusing_a_completed_operation_id_learns_nothing_of_it(
        settings: Settings, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        other_field = await number_field(stack, other_workspace)
        status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": {
            "subject_type": "Story", "subject_id": 7, "custom_field_id": field_id, "value": 42}})
        assert status == 200, body
        [value] = body["custom_field_values"].values()
        operation_id = uuid.UUID(value["operation_id"])
        before = await operation(stack, workspace, operation_id)

        reuse = write_command(other_workspace.id, other_field, 7, 666, command_id=operation_id)
        await publish_signed(channel, other_workspace.key, reuse, routing_key=str(other_workspace.id),
                             replies=replies, correlation_id="reuse")
        unsigned = envelope(write_command(workspace.id, field_id, 7, 667, command_id=operation_id))
        await publish(channel, unsigned, {}, str(workspace.id), reply_to=replies.name, correlation_id="unsigned")
        [reply] = await replies.wait("reuse")
        assert reply["status"] == "failed" and reply["values"] == [], reply
        assert error_types(reply) == ["conflict"], reply
        assert "42" not in orjson.dumps(reply).decode().replace(str(operation_id), "")
        [reply] = await replies.wait("unsigned")
        assert reply["status"] == "failed" and error_types(reply) == ["unauthenticated"], reply

        assert await operation(stack, workspace, operation_id) == before
        status, body = await operation(stack, other_workspace, operation_id)
        assert status == 404, body
    rows = await db.fetch("SELECT workspace_id, value FROM value_versions")
    assert [tuple(r) for r in rows] == [(workspace.id, 42)]


async def test_an_idempotent_retry_never_replays_another_workspaces_outcome(
        settings: Settings, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    """A command of another workspace reusing the id of a pending operation, with an idempotency key: a retry
    with that key must replay the other workspace's own outcome (or nothing), never the first workspace's."""
    secret_name = f"secret-{uuid.uuid4().hex[:8]}"
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field = await stack.create_field(workspace, name=secret_name, subject_type="Story", value_type="number")
        other_field = await number_field(stack, other_workspace)
        operation_id = await write_async(stack, workspace, int(field["id"]), 7, 424242)
        held = await take_queued_message(settings)

        first = write_command(other_workspace.id, other_field, 8, 1, command_id=operation_id)
        first.update(idempotency_key="retry-me", request_hash="same-request")
        async with worker_task(settings):
            await publish_signed(channel, other_workspace.key, first, routing_key=str(other_workspace.id),
                                 replies=replies, correlation_id="first")
            await replies.wait("first")
            await publish(channel, held.body, dict(held.headers), held.routing_key or str(workspace.id),
                          message_id=held.message_id)
            done = await settled(stack, workspace, operation_id)
            assert done["status"] == "succeeded", done

            retry = write_command(other_workspace.id, other_field, 8, 1)
            retry.update(idempotency_key="retry-me", request_hash="same-request")
            await publish_signed(channel, other_workspace.key, retry, routing_key=str(other_workspace.id),
                                 replies=replies, correlation_id="retry")
            [replayed] = await replies.wait("retry")
        text = orjson.dumps(replayed).decode()
        assert secret_name not in text and "424242" not in text, replayed


# --- register_subjects over the queue ----------------------------------------------------------------------


async def test_register_subjects_over_the_queue_lets_project_members_write(settings: Settings,
                                                                           workspace: Workspace,
                                                                           db: asyncpg.Connection[Any]) -> None:
    member_id, member = await user_key(db, workspace, "account_collaboration", "Mia")
    await accounts.set_membership(db, workspace.id, member_id, "100", "project_collaboration")
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field = await stack.create_field(workspace, name="Effort", subject_type="Story", value_type="number",
                                         write_access="project_collaboration")
        field_id = int(field["id"])
        routing_key = str(workspace.id)

        async def outcome(api_key: str, cmd: dict[str, Any]) -> dict[str, Any]:
            await publish_signed(channel, api_key, cmd, routing_key=routing_key, replies=replies)
            [reply] = await replies.wait(cmd["id"])
            return reply

        # Before any placement, the member may not write a Story (it belongs to no project).
        refused = await outcome(member.secret, write_command(workspace.id, field_id, 42, 1))
        assert refused["status"] == "failed" and error_types(refused) == ["forbidden"], refused
        # Placing takes project_admin: a collaborator may not.
        refused = await outcome(member.secret, register_command(workspace.id, ("Story", 42, "100")))
        assert refused["status"] == "failed" and error_types(refused) == ["forbidden"], refused
        assert await db.fetchval("SELECT count(*) FROM subject_projects") == 0

        placed = await outcome(workspace.key, register_command(workspace.id, ("Story", 42, "100"),
                                                               ("Resource", 9, "100")))
        assert placed["status"] == "succeeded", placed
        rows = await db.fetch("SELECT subject_type, subject_id, project FROM subject_projects ORDER BY 1")
        assert [tuple(r) for r in rows] == [("Resource", "9", "100"), ("Story", "42", "100")]

        written = await outcome(member.secret, write_command(workspace.id, field_id, 42, 3))
        assert written["status"] == "succeeded", written
        assert written["values"][0]["setter"] == f"key:{member.id}"
        # A Story nobody placed is still refused.
        refused = await outcome(member.secret, write_command(workspace.id, field_id, 43, 3))
        assert refused["status"] == "failed" and error_types(refused) == ["forbidden"], refused

        status, listed, _ = await stack.request("GET", f"{VALUES}?subject_type=Story", as_key(workspace, member))
        assert status == 200 and [v["subject_id"] for v in listed["custom_field_values"].values()] == [42], listed


# --- revocation and role changes while writes wait in the queue --------------------------------------------


async def _queue_writes(stack: Stack, channel: aio_pika.abc.AbstractChannel, workspace: Workspace, key: IssuedKey,
                        field_id: int, first_subject: int) -> list[uuid.UUID]:
    """Three async HTTP writes and three signed queue writes made with ``key``; their operation ids."""
    via_http = as_key(workspace, key)
    ids = [await write_async(stack, via_http, field_id, first_subject + n, n) for n in range(3)]
    for n in range(3, 6):
        cmd = write_command(workspace.id, field_id, first_subject + n, n)
        await publish_signed(channel, key.secret, cmd, routing_key=str(workspace.id))
        ids.append(uuid.UUID(cmd["id"]))
    return ids


@pytest.mark.parametrize("how", ["sql", "admin_api"])
async def test_revoking_a_key_fails_the_writes_it_queued(how: str, settings: Settings, workspace: Workspace,
                                                         db: asyncpg.Connection[Any]) -> None:
    """Writes accepted (HTTP 202, or published signed) before their key was revoked, and applied after, fail
    ``unauthenticated``: the worker checks the key when it applies, not when the write was accepted."""
    _, key = await user_key(db, workspace, "account_admin", "Rex")
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        operation_ids = await _queue_writes(stack, channel, workspace, key, field_id, 1)
        # A field deletion and a placement, both over HTTP and async, queued by the same key.
        status, body, _ = await stack.request("DELETE", f"/api/v1/custom_fields/{field_id}", as_key(workspace, key),
                                              headers=ASYNC)
        assert status == 202, body
        operation_ids.append(uuid.UUID(body["operation"]["id"]))
        status, body, _ = await stack.request(
            "PUT", "/api/v1/subject_projects", as_key(workspace, key), headers=ASYNC,
            json={"subject_projects": [{"subject_type": "Story", "subject_id": 1, "project": "100"}]})
        assert status == 202, body
        operation_ids.append(uuid.UUID(body["operation"]["id"]))

        if how == "sql":
            await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        else:
            status, body, _ = await stack.request("DELETE", f"/api/v1/api_keys/{key.id}", workspace)
            assert status == 204, body
        async with worker_task(settings):
            outcomes = await settled_in_db(db, operation_ids)
            for operation_id in operation_ids:
                answer = await settled(stack, workspace, operation_id)
                assert answer["http_status"] == 401, answer
    for operation_id, outcome in outcomes.items():
        assert outcome["status"] == "failed" and error_types(outcome) == ["unauthenticated"], (operation_id, outcome)
    await nothing_written(db)
    assert await db.fetchval("SELECT deleted_at FROM custom_fields WHERE id = $1", field_id) is None
    assert await db.fetchval("SELECT count(*) FROM subject_projects") == 0


async def test_a_key_revoked_behind_the_gateways_cache_writes_nothing(settings: Settings, workspace: Workspace,
                                                                     db: asyncpg.Connection[Any]) -> None:
    """The gateway caches principals for a few seconds, so a key revoked straight in the database (or through
    another gateway) may still pass its authentication: the command it publishes is signed with the revoked key,
    and the worker refuses it."""
    _, key = await user_key(db, workspace, "account_admin", "Cal")
    async with running_stack(settings) as stack:
        field_id = await number_field(stack, workspace)
        cached = as_key(workspace, key)
        status, body, _ = await stack.request("GET", "/api/v1/custom_fields", cached)  # now cached
        assert status == 200, body
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", key.id)
        status, body, _ = await stack.request("POST", VALUES, cached, json={"custom_field_value": {
            "subject_type": "Story", "subject_id": 7, "custom_field_id": field_id, "value": 1}})
        assert status == 401, body
        assert [e["type"] for e in body["errors"]] in (["unauthenticated"], ["authentication"]), body
    await nothing_written(db)


@pytest.mark.parametrize("lowered", ["account_role", "membership", "membership_removed"])
async def test_lowering_access_fails_the_writes_queued_before(lowered: str, settings: Settings,
                                                              workspace: Workspace,
                                                              db: asyncpg.Connection[Any]) -> None:
    """Writes queued while the user could make them, applied after its role (or project permission) was lowered,
    fail ``forbidden``."""
    role = "account_admin" if lowered == "account_role" else "account_collaboration"
    user_id, key = await user_key(db, workspace, role, "Lou")
    if lowered != "account_role":
        await accounts.set_membership(db, workspace.id, user_id, "100", "project_admin")
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)  # write_access: project_admin
        # The Stories are placed in project 100 first, in the same stream, by an administrator.
        await publish_signed(channel, workspace.key, register_command(
            workspace.id, *[("Story", s, "100") for s in range(1, 7)]), routing_key=str(workspace.id))
        operation_ids = await _queue_writes(stack, channel, workspace, key, field_id, 1)
        if lowered == "account_role":
            await db.execute("UPDATE users SET account_role = 'account_collaboration' WHERE id = $1", user_id)
        elif lowered == "membership":
            await accounts.set_membership(db, workspace.id, user_id, "100", "financial")
        else:
            assert await accounts.delete_membership(db, workspace.id, user_id, "100")
        async with worker_task(settings):
            outcomes = await settled_in_db(db, operation_ids)
            for operation_id in operation_ids[:3]:
                answer = await settled(stack, workspace, operation_id)
                assert answer["http_status"] == 403, answer
    for operation_id, outcome in outcomes.items():
        assert outcome["status"] == "failed" and error_types(outcome) == ["forbidden"], (operation_id, outcome)
    await nothing_written(db)


@pytest.mark.parametrize("granted", ["account_role", "membership"])
async def test_writes_queued_before_a_grant_succeed_if_it_comes_before_they_are_applied(
        granted: str, settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    """The worker decides at apply time, with the keys, roles, memberships and placements in force then: a write
    is not judged by what its user could do when it was accepted (the gateway only authenticates), but by what
    they can do when the worker applies it. So a revocation or a lowered role stops writes still queued, and,
    symmetrically, a write queued by a user who could not make it yet succeeds if the role or membership is
    granted before the worker reaches it. Writes already applied are never revisited."""
    user_id, key = await user_key(db, workspace, "account_collaboration", "Gus")
    async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
        field_id = await number_field(stack, workspace)
        await publish_signed(channel, workspace.key, register_command(
            workspace.id, *[("Story", s, "100") for s in range(1, 7)]), routing_key=str(workspace.id))
        operation_ids = await _queue_writes(stack, channel, workspace, key, field_id, 1)
        if granted == "account_role":
            await db.execute("UPDATE users SET account_role = 'account_admin' WHERE id = $1", user_id)
        else:
            await accounts.set_membership(db, workspace.id, user_id, "100", "project_admin")
        async with worker_task(settings):
            outcomes = await settled_in_db(db, operation_ids)
    for operation_id, outcome in outcomes.items():
        assert outcome["status"] == "succeeded", (operation_id, outcome)
        assert outcome["values"][0]["setter"] == f"key:{key.id}"
    assert await db.fetchval("SELECT count(*) FROM value_versions") == 6


async def test_replies_go_only_to_the_publishers_own_queues(settings: Settings, workspace: Workspace) -> None:
    """A reply_to naming someone else's queue (another integration's, cfv's own) gets nothing, signed or not:
    the worker answers a direct reply-to, or a queue named after the publishing user (user_id, which RabbitMQ
    checks against the connection)."""
    async with running_stack(settings) as stack, broker_channel(settings) as channel, \
            replies_on(channel) as replies:
        field_id = await number_field(stack, workspace)
        victim = await channel.declare_queue("globex-sync.events", auto_delete=True)
        signed = write_command(workspace.id, field_id, 1, 1)
        unsigned = envelope(write_command(workspace.id, field_id, 2, 2))
        for properties in ({}, {"user_id": "guest"}):
            body = envelope(signed | {"id": str(uuid.uuid4())})
            await publish(channel, body, sign_message(body, workspace.key), str(workspace.id),
                          reply_to=victim.name, correlation_id="signed", **properties)
            await publish(channel, unsigned, {}, str(workspace.id), reply_to=victim.name,
                          correlation_id="unsigned", **properties)
        # A control on the publisher's own queue shows the worker has answered what came before it.
        await publish_signed(channel, workspace.key, write_command(workspace.id, field_id, 3, 3),
                             routing_key=str(workspace.id), replies=replies, correlation_id="control")
        [control] = await replies.wait("control")
        assert control["status"] == "succeeded", control
        assert await victim.get(fail=False) is None

