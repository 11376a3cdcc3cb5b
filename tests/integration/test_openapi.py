"""The API describes itself (issue 12): an OpenAPI 3.1 document of every route at /api/v1/openapi.json (no key),
valid, with each operation's summary, parameters, body and answers from the wire models; and a docs page at
/docs that works offline, checked in a real headless Chromium (driven over the DevTools protocol) that may reach
nothing but the gateway: it loads with no console error and lists the operations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from cfv.gateway.openapi import ANSWERS, BODIES
from openapi_spec_validator import validate
from support import Stack, Workspace, free_port, wait_for


async def _spec(stack: Stack) -> dict[str, Any]:
    status, body, headers = await stack.request("GET", "/api/v1/openapi.json", None)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return body  # type: ignore[no-any-return]


async def test_the_document_describes_every_route_of_the_app(stack: Stack) -> None:
    spec = await _spec(stack)
    validate(spec)  # OpenAPI 3.1, schemas included
    assert spec["openapi"] == "3.1.0"
    app_routes = {(method, path) for method, path in await _routes(stack)}
    described = {(method.upper(), path) for path, operations in spec["paths"].items() for method in operations}
    assert app_routes == described, (app_routes ^ described)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"], where
            assert any(code.startswith("2") for code in operation["responses"]), where
            if path.startswith("/api/") and method in ("post", "put", "patch") and "work-items" not in path \
                    and not path.endswith(("/memberships/{project}", "/retry")):  # (these take no body)
                assert "requestBody" in operation, where
    write = spec["paths"]["/api/v1/custom_field_values"]["post"]
    assert write["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WriteValuesIn"}
    assert set(write["responses"]) >= {"200", "202", "400", "401", "422", "429", "503"}
    assert "CustomFieldValueOut" in spec["components"]["schemas"]
    events = spec["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in events["parameters"]} >= {"after", "limit", "type", "subject_type"}
    assert spec["paths"]["/readyz"]["get"]["security"] == []
    webhooks = spec["paths"]["/api/v1/webhooks"]
    assert webhooks["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WebhookCreate"}
    assert set(webhooks["post"]["responses"]) >= {"201", "403", "422"} and webhooks["post"]["tags"] == ["Webhooks"]
    assert {"WebhookOut", "WebhookUpdate", "DeliveryOut"} <= set(spec["components"]["schemas"])
    assert "202" in spec["paths"]["/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"]["post"]["responses"]


async def _routes(stack: Stack) -> list[tuple[str, str]]:
    """The app's routes (read from a gateway made the same way, without serving)."""
    from typing import cast

    from cfv.gateway.app import create_app
    from cfv.gateway.limits import RateLimiter
    app = create_app(stack.settings, cast(Any, None), cast(Any, None), cast(RateLimiter, object()))
    return [(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None and not r.resource.canonical.startswith("/docs")
            and r.resource.canonical != "/api/v1/openapi.json"]


def test_the_tables_name_only_handlers_of_routes() -> None:
    from typing import cast

    from cfv.gateway.app import create_app
    from cfv.gateway.limits import RateLimiter
    from cfv.settings import Settings
    app = create_app(Settings(), cast(Any, None), cast(Any, None), cast(RateLimiter, object()))
    handlers = {r.handler for r in app.router.routes()}
    assert set(BODIES) <= handlers and set(ANSWERS) <= handlers
    documented = {r.handler for r in app.router.routes() if r.resource is not None
                  and r.resource.canonical.startswith(("/api/v1/", "/livez", "/healthz", "/readyz"))
                  and r.resource.canonical != "/api/v1/openapi.json" and r.method != "HEAD"}
    assert documented <= set(ANSWERS), documented - set(ANSWERS)


async def test_the_document_needs_no_key_and_the_api_still_does(stack: Stack, workspace: Workspace) -> None:
    assert (await stack.request("GET", "/api/v1/openapi.json", None))[0] == 200
    assert (await stack.request("GET", "/api/v1/custom_fields", None))[0] == 401


def _start_chromium(chromium: str, port: int, profile: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 (a fixed command line)
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-extensions",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[str]:
    """A headless Chromium that can reach 127.0.0.1 only; yields its DevTools address."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is needed for this test: apt-get install chromium (bin/test installs it)"
    port = free_port()
    # Chromium's helper processes (its own session) may still write to the profile as the browser exits: stop
    # them all, and let a file they leave behind not fail the test (seen: "Directory not empty: 'Default'").
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        process = _start_chromium(chromium, port, profile)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait, 10)


async def test_the_docs_page_works_offline_in_a_real_browser(stack: Stack) -> None:
    async with _browser() as devtools, aiohttp.ClientSession() as http:
        async def targets() -> bool:
            try:
                async with http.get(f"{devtools}/json/list") as answer:
                    return any(t["type"] == "page" for t in await answer.json())
            except aiohttp.ClientConnectionError:
                return False
        await wait_for(targets, 20, "Chromium's DevTools")
        async with http.get(f"{devtools}/json/list") as answer:
            page = next(t for t in await answer.json() if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = itertools.count(1)
            problems: list[str] = []
            pending: dict[int, asyncio.Future[Any]] = {}

            async def receive() -> None:
                async for message in ws:
                    data = message.json()
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data.get("result"))
                    elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                        problems.append(f"console: {data['params']['args']}")
                    elif data.get("method") == "Runtime.exceptionThrown":
                        problems.append(f"exception: {data['params']['exceptionDetails']}")
                    elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                        problems.append(f"log: {data['params']['entry']}")

            async def call(method: str, **params: Any) -> Any:
                number = next(ids)
                pending[number] = asyncio.get_running_loop().create_future()
                await ws.send_json({"id": number, "method": method, "params": params})
                return await asyncio.wait_for(pending[number], 20)

            reader = asyncio.create_task(receive())
            try:
                for domain in ("Runtime", "Log", "Page"):
                    await call(f"{domain}.enable")
                await call("Page.navigate", url=f"{stack.base}/docs")

                async def listed() -> bool:
                    found = await call("Runtime.evaluate", returnByValue=True,
                                       expression="document.querySelectorAll('.opblock').length")
                    return bool(found["result"].get("value", 0) >= 60)
                await wait_for(listed, 30, "the page to list the operations")
                text = await call("Runtime.evaluate", returnByValue=True, expression="document.body.innerText")
                assert "/api/v1/custom_field_values" in text["result"]["value"]
                assert "/api/v1/workspaces/{slug}/projects/" in text["result"]["value"]
                await asyncio.sleep(0.5)  # late errors (an asset that failed after the first render)
                assert problems == [], problems
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
