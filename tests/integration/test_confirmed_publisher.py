"""The lean publisher against the real RabbitMQ: a window arrives whole and in order with its properties, and
every failure (a refused publish, a cut connection, a silent broker) is an error, never a false confirm."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from cfv.broker.confirmed import ConfirmedPublisher, Outgoing, PublishError, Unroutable
from support.proxy import proxy_to

EXCHANGE = "test.events"


def message(n: int, body: bytes | None = None) -> Outgoing:
    return Outgoing(EXCHANGE, f"acme.Story.{n % 3}.replaced", body if body is not None else f"event {n}".encode(),
                    f"id-{n}", "cfv.value.replaced.v1", "application/cloudevents+json")


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC)
    declared = await channel.declare_queue(exclusive=True)
    await declared.bind(exchange, routing_key="#")
    yield declared
    await connection.close()


async def drain(queue: aio_pika.abc.AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    received = []
    for _ in range(count):
        got = await queue.get(timeout=5, no_ack=True)
        assert got is not None
        received.append(got)
    assert await queue.get(fail=False) is None
    return received


async def test_windows_arrive_whole_in_order_with_their_properties(amqp_url: str,
                                                                  queue: aio_pika.abc.AbstractQueue) -> None:
    publisher = await ConfirmedPublisher.connect(amqp_url, name="test")
    try:
        big = bytes(range(256)) * 2000  # beyond one frame: split into several body frames
        assert await publisher.publish([message(n) for n in range(300)]) == 300
        assert await publisher.publish([message(300, big), message(301, b""), message(302)]) == 3
        assert await publisher.publish([]) == 0
    finally:
        await publisher.close()
    received = await drain(queue, 303)
    assert [m.message_id for m in received] == [f"id-{n}" for n in range(303)]
    assert [m.routing_key for m in received[:3]] == ["acme.Story.0.replaced", "acme.Story.1.replaced",
                                                     "acme.Story.2.replaced"]
    assert received[7].body == b"event 7" and received[300].body == big and received[301].body == b""
    first = received[0]
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (first.type, first.content_type) == ("cfv.value.replaced.v1", "application/cloudevents+json")


async def test_a_refused_publish_is_an_error_and_closes_the_publisher(amqp_url: str) -> None:
    publisher = await ConfirmedPublisher.connect(amqp_url, name="test")
    try:
        with pytest.raises(PublishError, match="404"):  # no such exchange: the broker closes the channel
            await publisher.publish([Outgoing("nowhere", "k", b"x", "1", "t", "text/plain")])
        assert not publisher.is_open
        with pytest.raises(PublishError):
            await publisher.publish([message(1)])
    finally:
        await publisher.close()


async def test_a_cut_connection_is_an_error(amqp_url: str, queue: aio_pika.abc.AbstractQueue) -> None:
    async with proxy_to(amqp_url) as proxy:
        publisher = await ConfirmedPublisher.connect(proxy.url(amqp_url), name="test")
        try:
            assert await publisher.publish([message(1)]) == 1
            await proxy.cut()
            with pytest.raises(PublishError, match="lost"):
                async with asyncio.timeout(5):
                    await publisher.publish([message(2)])
        finally:
            await publisher.close()


async def test_unconfirmed_windows_wait_for_their_confirms(amqp_url: str, queue: aio_pika.abc.AbstractQueue) -> None:
    """A broker whose confirms do not come back leaves the window unconfirmed: the caller's timeout ends it."""
    async with proxy_to(amqp_url) as proxy:
        publisher = await ConfirmedPublisher.connect(proxy.url(amqp_url), name="test")
        try:
            proxy.stall()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await publisher.publish([message(1), message(2)])
        finally:
            proxy.flow()
            await publisher.close()


async def test_wrong_credentials_refuse_the_connection(amqp_url: str) -> None:
    with pytest.raises(PublishError, match="handshake"):
        await ConfirmedPublisher.connect(amqp_url.replace("guest:guest", "guest:wrong"), name="test")


async def test_mandatory_messages_nobody_can_route_are_refused(amqp_url: str,
                                                              queue: aio_pika.abc.AbstractQueue) -> None:
    """Routed to no queue, a mandatory message is an error (the broker confirms it, and drops it); the
    publisher stays usable, and headers arrive as given."""
    publisher = await ConfirmedPublisher.connect(amqp_url, name="test")
    try:
        lost = Outgoing("amq.direct", "nobody-listens", b"x", "lost-1", None, "application/json")
        with pytest.raises(Unroutable, match="NO_ROUTE"):
            await publisher.publish([lost], mandatory=True)
        assert publisher.is_open
        kept = Outgoing(EXCHANGE, "acme.Story.1.created", b"{}", "kept-1", None, "application/json",
                        {"cfv-commands": 2, "cfv-key": "abc"})
        assert await publisher.publish([kept], mandatory=True) == 1
    finally:
        await publisher.close()
    [received] = await drain(queue, 1)
    assert received.message_id == "kept-1" and received.headers == {"cfv-commands": 2, "cfv-key": "abc"}
