"""Connecting to RabbitMQ, with reconnection handled by aio-pika's robust connection."""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractRobustConnection


async def connect(url: str, *, name: str) -> AbstractRobustConnection:
    """A robust connection that re-establishes itself, its channels and its consumers after a failure."""
    # aio-pika waits 5 s before reconnecting; a second is plenty for a broker that closed one connection.
    return await aio_pika.connect_robust(url, client_properties={"connection_name": name}, reconnect_interval=1)
