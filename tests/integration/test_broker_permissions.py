"""An integration's RabbitMQ user, as `cfv integration-permissions` grants it: its workspace's events only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import aiohttp
import orjson
import pytest
from aiormq.exceptions import ChannelAccessRefused
from cfv.broker.permissions import integration_permissions
from cfv.broker.topology import COMMANDS_EXCHANGE, EVENTS_EXCHANGE, shard_queue
from cfv_schemas.signing import sign_message
from support import AMQP_HOST, RABBIT_API, Stack, Workspace
from support.pipeline import command, envelope, number_field


@pytest.fixture
async def integration_url(stack: Stack, workspace: Workspace) -> AsyncIterator[tuple[str, str]]:
    """A RabbitMQ user with the permissions of an integration of ``workspace``: (its AMQP URL, its name)."""
    user, password = f"{workspace.slug}-sync-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    vhost = quote(urlsplit(stack.settings.amqp_url).path.lstrip("/"), safe="")
    granted = integration_permissions(user, workspace.slug)
    async with aiohttp.ClientSession() as http:
        for url, body in ((f"{RABBIT_API}/users/{user}", {"password": password, "tags": ""}),
                          (f"{RABBIT_API}/permissions/{vhost}/{user}", {
                              "configure": granted.configure, "write": granted.write, "read": granted.read}),
                          (f"{RABBIT_API}/topic-permissions/{vhost}/{user}", {
                              "exchange": EVENTS_EXCHANGE, "write": "^$", "read": granted.events_read})):
            async with http.put(url, json=body) as answer:
                assert answer.status in (201, 204), await answer.text()
        yield f"amqp://{user}:{password}@{AMQP_HOST}/{vhost}", user
        async with http.delete(f"{RABBIT_API}/users/{user}") as answer:
            assert answer.status in (204, 404)


async def _refused(connection: aio_pika.abc.AbstractConnection, action: Any) -> bool:
    """Whether RabbitMQ refuses ``action(channel)`` for lack of permission (each try on a fresh channel)."""
    channel = await connection.channel()
    try:
        await action(channel)
    except ChannelAccessRefused:
        return True
    finally:
        if not channel.is_closed:
            await channel.close()
    return False


async def test_an_integration_sees_only_its_workspaces_events_and_may_publish_commands(
        stack: Stack, workspace: Workspace, other_workspace: Workspace,
        integration_url: tuple[str, str]) -> None:
    url, user = integration_url
    ours = await number_field(stack, workspace)
    theirs = await number_field(stack, other_workspace)
    connection = await aio_pika.connect(url)
    try:
        own = f"{user}.events"

        async def bind(routing_key: str) -> Any:
            async def act(channel: aio_pika.abc.AbstractChannel) -> None:
                queue = await channel.declare_queue(own, auto_delete=True)
                await queue.bind(EVENTS_EXCHANGE, routing_key)
            return act

        # Binding to another workspace's events, or to all of them, is refused; to its own, allowed.
        for routing_key in (f"{other_workspace.slug}.#", "#", "*.Story.#", f"{workspace.slug}X.#"):
            assert await _refused(connection, await bind(routing_key)), routing_key
        assert not await _refused(connection, await bind(f"{workspace.slug}.#"))
        # Only its own queues; never cfv's.
        assert await _refused(connection, lambda ch: ch.declare_queue("someone-else.q", auto_delete=True))
        assert await _refused(connection, _consume_shard)
        assert await _refused(connection, lambda ch: _publish(ch, EVENTS_EXCHANGE, f"{workspace.slug}.x", b"{}"))

        channel = await connection.channel()
        # A queue of its value events (the one above is bound to every event of the workspace, the fields' own too)
        queue = await channel.declare_queue(f"{user}.values", auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, f"{workspace.slug}.*.*.*")
        # A signed command published by the integration is applied; only this workspace's event arrives.
        body = envelope(command(workspace.id, ours, 5, 7))
        await _publish(channel, COMMANDS_EXCHANGE, str(workspace.id), body, sign_message(body, workspace.key))
        status, written, _ = await stack.request("POST", "/api/v1/custom_field_values", other_workspace, json={
            "custom_field_value": {"subject_type": "Story", "subject_id": 5, "custom_field_id": theirs,
                                   "value": 8}})
        assert status == 200, written
        message = await _next(queue)
        event = orjson.loads(message.body)
        assert (event["data"]["workspace"], event["data"]["after"]["value"]) == (workspace.slug, 7)
        with pytest.raises(asyncio.TimeoutError):
            await _next(queue, timeout=1.0)  # the other workspace's event never comes
    finally:
        await connection.close()


async def _consume_shard(channel: aio_pika.abc.AbstractChannel) -> None:
    async def ignore(_: aio_pika.abc.AbstractIncomingMessage) -> None:
        return None

    queue = await channel.get_queue(shard_queue(0), ensure=False)
    await queue.consume(ignore)


async def _publish(channel: aio_pika.abc.AbstractChannel, exchange_name: str, routing_key: str, body: bytes,
                   headers: dict[str, str] | None = None) -> None:
    exchange = await channel.get_exchange(exchange_name, ensure=False)
    await exchange.publish(aio_pika.Message(body, headers=headers or {}), routing_key=routing_key)


async def _next(queue: aio_pika.abc.AbstractQueue, timeout: float = 10.0) -> aio_pika.abc.AbstractIncomingMessage:
    async with asyncio.timeout(timeout):
        while True:
            message = await queue.get(fail=False)
            if message is not None:
                await message.ack()
                return message
            await asyncio.sleep(0.1)
