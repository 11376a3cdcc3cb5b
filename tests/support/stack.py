"""A running cfv (gateway, worker, relay in this process) and the workspaces tests act as."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
from cfv.processes import run_gateway, run_relay, run_worker
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from cfv.store.queries import query

from support.services import wait_for


@dataclass
class Workspace:
    """A workspace and a key of it."""

    id: int
    slug: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate as this workspace."""
        return {"X-API-Key": self.key}


async def create_workspace(db: asyncpg.Connection[Any], slug: str) -> Workspace:
    """Create a workspace with one API key."""
    workspace_id = await db.fetchval(query("create_workspace"), slug, slug)
    issued = await issue_key(db, workspace_id, name="test")
    return Workspace(workspace_id, slug, issued.secret)


async def add_users(db: asyncpg.Connection[Any], workspace_id: int, *, ids: Iterable[int] = (),
                    uuids: Iterable[str] = ()) -> None:
    """Users of the workspace with these ids (Kantata's user relations name users by id) and UUIDs (work-item
    properties' by UUID): a user relation must name users of its workspace."""
    for user_id in ids:
        await db.execute("INSERT INTO users (id, workspace_id, name, account_role) OVERRIDING SYSTEM VALUE "
                         "VALUES ($1, $2, $3, 'account_collaboration')", user_id, workspace_id, f"user {user_id}")
    for user_uuid in uuids:
        await db.execute("INSERT INTO users (uuid, workspace_id, name, account_role) "
                         "VALUES ($1, $2, $3, 'account_collaboration')", uuid.UUID(user_uuid), workspace_id,
                         f"user {user_uuid}")


@dataclass
class Stack:
    """A running gateway, worker and relay (in this process), and an HTTP client for the gateway."""

    settings: Settings
    http: aiohttp.ClientSession
    base: str

    async def request(self, method: str, path: str, workspace: Workspace | None, *,
                      json: Any = None, headers: dict[str, str] | None = None,
                      data: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        """Send a request; return (status, decoded JSON body or None, headers)."""
        all_headers = dict(workspace.headers if workspace else {})
        all_headers.update(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            all_headers.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=all_headers) as answer:
            raw = await answer.read()
            body = orjson.loads(raw) if raw else None
            return answer.status, body, dict(answer.headers)

    async def create_field(self, workspace: Workspace, **spec: Any) -> dict[str, Any]:
        """Define a custom field; return it as answered."""
        status, body, _ = await self.request("POST", "/api/v1/custom_fields", workspace,
                                             json={"custom_field": spec})
        assert status == 201, body
        field: dict[str, Any] = next(iter(body["custom_fields"].values()))
        return field


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, *, worker: bool = True, relay: bool = True,
                        backend: Settings | None = None) -> AsyncIterator[Stack]:
    """Run the gateway (and, unless told otherwise, a worker and the relay) until the block ends.

    ``backend`` gives the worker and relay other settings than the gateway's (say, when only the gateway
    goes through a proxy).
    """
    ready = asyncio.Event()
    tasks = [asyncio.create_task(run_gateway(settings, ready))]
    if worker:
        tasks.append(asyncio.create_task(run_worker(backend or settings)))
    if relay:
        tasks.append(asyncio.create_task(run_relay(backend or settings)))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        async with aiohttp.ClientSession() as http:
            yield Stack(settings, http, f"http://{settings.http_host}:{settings.http_port}")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)


class EventCollector:
    """Collects the change events published to ``cfv.events`` (the ``events`` fixture binds value events only:
    ``*.*.*.*``)."""

    def __init__(self) -> None:
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    @property
    def events(self) -> list[dict[str, Any]]:
        """The decoded events, in arrival order."""
        return [orjson.loads(m.body) for m in self.messages]

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)

    async def wait_for_count(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events arrived; return them."""
        async def enough() -> bool:
            return len(self.messages) >= count
        await wait_for(enough, timeout, f"{count} events (have {len(self.messages)})")
        return self.events


@contextlib.asynccontextmanager
async def collecting(amqp_url: str, routing_key: str) -> AsyncIterator[EventCollector]:
    """A consumer of the events published to ``cfv.events`` (declared if needed) with ``routing_key``: ``*.*.*.*``
    value events (four words), ``*.definition.#`` definition events."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("cfv.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=routing_key)
        collector = EventCollector()
        await queue.consume(collector._on_message, no_ack=True)
        yield collector
    finally:
        await connection.close()
