"""A dependency lost at the wrong moment is a 503 saying so, never a 500: asyncpg raises InternalClientError
("cannot switch to state ...") for a connection lost while a pool resets it."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cfv.gateway.errors import error_middleware


@pytest.mark.parametrize("raised", [
    asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionResetError(104, "Connection reset by peer"),
])
async def test_a_lost_dependency_is_503(raised: Exception) -> None:
    async def handler(_: web.Request) -> web.Response:
        raise raised

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/api/v1/custom_field_values", handler)
    async with TestServer(app) as server, aiohttp.ClientSession() as http, \
            http.post(server.make_url("/api/v1/custom_field_values")) as answer:
        body = await answer.json()
        assert answer.status == 503, body
        assert answer.headers["Retry-After"] == "5"
        assert [e["type"] for e in body["errors"]] == ["unavailable"]
