"""A dependency lost at the wrong moment is a 503 saying so, never a 500: asyncpg raises InternalClientError
("cannot switch to state ...") for a connection lost while a pool resets it."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cfv.gateway import keys
from cfv.gateway.errors import error_middleware
from cfv.gateway.observe import install as install_observer
from cfv.gateway.observe import observe_middleware
from cfv.settings import Settings
from support import captured_logs


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


async def test_a_500_names_the_request_id_and_its_log_line_carries_it() -> None:
    async def handler(_: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[observe_middleware, error_middleware])
    app[keys.SETTINGS] = Settings()
    install_observer(app)
    app.router.add_get("/api/v1/custom_fields", handler)
    with captured_logs() as logged:
        async with TestServer(app) as server, aiohttp.ClientSession() as http, \
                http.get(server.make_url("/api/v1/custom_fields"), headers={"X-Request-ID": "r-500"}) as answer:
            body = await answer.json()
    assert answer.status == 500
    assert answer.headers["X-Request-ID"] == "r-500"
    assert "r-500" in body["errors"][0]["message"], body
    [failure] = [e for e in logged if e["event"] == "unexpected error"]
    assert failure["request_id"] == "r-500" and failure["log_level"] == "error"
    [access] = [e for e in logged if e["event"] == "request"]
    assert (access["status"], access["request_id"]) == (500, "r-500")
