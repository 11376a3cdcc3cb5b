"""What the tests talk to: the real PostgreSQL and RabbitMQ (addresses from CFV_TEST_*), and small helpers to
wait for a condition, find a free port and capture logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from cfv.logs import add_request_id

PG_ADMIN = os.environ.get("CFV_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

AMQP_HOST = os.environ.get("CFV_TEST_AMQP_HOST", "127.0.0.1:5672")

RABBIT_API = os.environ.get("CFV_TEST_RABBIT_API", "http://guest:guest@127.0.0.1:15672/api")

def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name

def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port

async def add_vhost(http: aiohttp.ClientSession, api: str, vhost: str) -> None:
    """Create ``vhost`` through the management API at ``api``, where guest may do anything."""
    async with http.put(f"{api}/vhosts/{quote(vhost, safe='')}") as answer:
        assert answer.status in (201, 204), await answer.text()
    async with http.put(f"{api}/permissions/{quote(vhost, safe='')}/guest",
                        json={"configure": ".*", "write": ".*", "read": ".*"}) as answer:
        assert answer.status in (201, 204), await answer.text()

async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``condition`` until true, or fail the test after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)

@contextlib.contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event of the block, with the context bound to it (a request id), whatever level an earlier
    test (or ``cfv``'s command line) configured (``structlog.testing.capture_logs`` keeps the configured level
    filter)."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars, add_request_id]) as logged:
            yield logged
    finally:
        structlog.configure(**before)
