"""Requests aiohttp cannot parse are answered in JSON in the face's error shape and logged in one line, never
as a traceback; a client that leaves mid-body is not a lost dependency (issue 14, item 4)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from cfv.settings import Settings
from support import Workspace, captured_logs, running_stack

KANTATA = "/api/v1/custom_field_values"
PLANE = "/api/v1/workspaces/demo/projects/1/work-items/2/work-item-properties/3/values/"
LONG = "a" * 9000


async def _raw(settings: Settings, data: bytes) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes; return the answer's status, headers and decoded JSON body."""
    reader, writer = await asyncio.open_connection(settings.http_host, settings.http_port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, orjson.loads(body)


def _aiohttp_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.WARNING]


def _kantata(message: str) -> Any:
    return {"errors": [{"type": "bad_request", "message": message, "field": None}]}


@pytest.mark.parametrize(("request_bytes", "status", "body"), [
    pytest.param(f"GET {KANTATA}?x={LONG} HTTP/1.1\r\nHost: t\r\n\r\n", 400,
                 _kantata("the request line is longer than 8190 bytes"), id="kantata-request-line"),
    pytest.param(f"GET {PLANE}?x={LONG} HTTP/1.1\r\nHost: t\r\n\r\n", 400,
                 {"non_field_errors": ["the request line is longer than 8190 bytes"]}, id="plane-request-line"),
    pytest.param(f"GET {KANTATA} HTTP/1.1\r\nHost: t\r\nX-API-Key: {LONG}\r\n\r\n", 431,
                 _kantata("a request header is longer than 8190 bytes"), id="kantata-header-value"),
    pytest.param(f"GET {PLANE} HTTP/1.1\r\nHost: t\r\nX-{LONG}: 1\r\n\r\n", 431,
                 {"error": "a request header is longer than 8190 bytes"}, id="plane-header-name"),
])
async def test_oversized_requests_answer_json_and_log_one_line(
        settings: Settings, request_bytes: str, status: int, body: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with running_stack(settings, worker=False, relay=False):
        caplog.clear()
        with captured_logs() as logged:
            answer = await _raw(settings, request_bytes.encode())
    assert answer[0] == status
    assert answer[1]["content-type"].startswith("application/json")
    assert answer[2] == body
    assert _aiohttp_warnings(caplog) == []  # no traceback from aiohttp
    assert [(e["event"], e["log_level"], e["status"]) for e in logged] == [
        ("malformed request refused", "info", status)]
    assert "aaaa" not in repr(logged)  # the offending bytes (a header may be a key) are not logged


async def test_bytes_that_are_not_http_answer_json(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    async with running_stack(settings, worker=False, relay=False):
        caplog.clear()
        status, _, body = await _raw(settings, b"GET /api/v1/custom_fields HTTP/1.1\r\nHo\x00st: t\r\n\r\n")
    assert status == 400
    assert body["errors"][0]["message"].startswith("the request is not valid HTTP/1.1")
    assert _aiohttp_warnings(caplog) == []


async def test_the_connection_serves_on_after_large_requests(settings: Settings, workspace: Workspace) -> None:
    """Bodies and keep-alive requests after a large one are not mistaken for request lines."""
    async with running_stack(settings, worker=False, relay=False) as stack:
        for _ in range(3):
            status, body, _ = await stack.request("POST", "/api/v1/custom_fields", workspace,
                                                  json={"custom_field": {"name": "x" * 8000, "subject_type": "Story",
                                                                         "value_type": "number"}})
            assert status in (201, 400, 422), body
        status, body, _ = await stack.request("GET", "/api/v1/custom_fields", workspace)
        assert status == 200, body


async def test_a_client_leaving_mid_body_is_not_a_lost_dependency(settings: Settings, workspace: Workspace) -> None:
    async with running_stack(settings, worker=False, relay=False):
        with captured_logs() as logged:
            _, writer = await asyncio.open_connection(settings.http_host, settings.http_port)
            writer.write(f"POST {KANTATA} HTTP/1.1\r\nHost: t\r\nX-API-Key: {workspace.key}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"custom_f".encode())
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.transport.abort()

            async def seen() -> bool:
                return any(e["event"] == "client went away mid-request" for e in logged)
            for _ in range(100):
                if await seen():
                    break
                await asyncio.sleep(0.05)
    events = [(e["event"], e["log_level"]) for e in logged]
    assert ("client went away mid-request", "info") in events
    assert not any(e["event"] == "dependency unreachable" for e in logged), events
