"""Rate limits and request limits, against the real stack and the real Redis.

Each test counts in its own Redis namespace (``rate_limit_prefix``), with budgets small enough to spend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from pydantic import SecretStr
from redis.asyncio import Redis
from support import Stack, Workspace, free_port, running_stack
from support.kantata import FIELDS, VALUES, assert_errors_shape, item, values_of, write
from support.plane import projects_path

ROOT = Path(__file__).resolve().parents[2]
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def limited(settings: Settings, **update: Any) -> Settings:
    """``settings`` with its own Redis namespace and the given limits."""
    return settings.model_copy(update={"rate_limit_prefix": f"cfvtest:{uuid.uuid4().hex}", **update})


def rate(headers: dict[str, str]) -> tuple[int, int, int]:
    """(limit, remaining, reset) of an answer; fails if a header is missing or not an integer."""
    for name in RATE_HEADERS:
        assert name in headers, (name, headers)
    limit, remaining, reset = (int(headers[name]) for name in RATE_HEADERS)
    return limit, remaining, reset


def assert_429(status: int, body: Any, headers: dict[str, str], *, plane: bool, window: float) -> None:
    assert status == 429, (status, body)
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= window + 1
    _, remaining, reset = rate(headers)
    assert remaining == 0 and reset == retry_after
    if plane:
        assert set(body) == {"detail"} and "retry in" in body["detail"], body
    else:
        [error] = assert_errors_shape(body)
        assert error["type"] == "rate_limited" and "retry in" in error["message"], error


async def plane_project(stack: Stack, workspace: Workspace) -> str:
    status, body, _ = await stack.request("POST", projects_path(workspace), workspace,
                                          json={"name": "Web", "identifier": "WEB"})
    assert status == 201, body
    return f"{projects_path(workspace)}{body['id']}/"


async def test_every_answer_under_api_carries_the_headers(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings)
    async with running_stack(settings) as stack:
        # Kantata face: 201, 200, 404 (a field, a route), 400, 405, 422, each counted in its class.
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        answers = [
            (await stack.request("POST", FIELDS, workspace, json={"custom_field": {"name": "x"}}), 400,
             settings.rate_limit_definitions),
            (await stack.request("GET", FIELDS, workspace), 200, settings.rate_limit_reads),
            (await stack.request("GET", f"{FIELDS}/999999", workspace), 404, settings.rate_limit_reads),
            (await stack.request("GET", "/api/v1/nowhere", workspace), 404, settings.rate_limit_reads),
            (await stack.request("PATCH", VALUES, workspace, json={}), 405, settings.rate_limit_writes),
            (await write(stack, workspace, item(field, "not a number")), 422, settings.rate_limit_writes),
            (await write(stack, workspace, item(field, 5)), 200, settings.rate_limit_writes),
        ]
        # Plane face: 201, 200, 404, 400.
        project = await plane_project(stack, workspace)
        answers += [
            (await stack.request("GET", project, workspace), 200, settings.rate_limit_reads),
            (await stack.request("GET", f"{projects_path(workspace)}{uuid.uuid4()}/", workspace), 404,
             settings.rate_limit_reads),
            (await stack.request("POST", f"{project}work-item-properties/", workspace, json={}), 400,
             settings.rate_limit_definitions),
        ]
        for (status, body, headers), expected_status, expected_limit in answers:
            assert status == expected_status, (status, body)
            limit, remaining, reset = rate(headers)
            assert limit == expected_limit and 0 < remaining < limit, headers
            assert 1 <= reset <= settings.rate_limit_window
        # Each request spends one of its class: two reads in a row.
        _, _, first = await stack.request("GET", FIELDS, workspace)
        _, _, second = await stack.request("GET", project, workspace)
        assert rate(second)[1] == rate(first)[1] - 1
        # A 401 is counted against the address's budget of failed authentications, and says so.
        for path in (FIELDS, project):
            status, _, headers = await stack.request("GET", path, None, headers={"X-API-Key": "cfv_wrong"})
            assert status == 401
            assert rate(headers)[0] == settings.auth_failure_limit
        # Outside /api/ nothing is limited.
        status, _, headers = await stack.request("GET", "/healthz", None)
        assert status == 200 and not any(name in headers for name in RATE_HEADERS)


async def test_429_once_over_budget_on_both_faces(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings, rate_limit_reads=4)
    async with running_stack(settings, worker=False, relay=False) as stack:
        project = await plane_project(stack, workspace)
        seen = []
        for path in (FIELDS, project, FIELDS, project):  # one budget for the key's reads, whichever face
            status, body, headers = await stack.request("GET", path, workspace)
            assert status == 200, body
            seen.append(rate(headers)[:2])
        assert seen == [(4, 3), (4, 2), (4, 1), (4, 0)]
        status, body, headers = await stack.request("GET", FIELDS, workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        assert "4 reads requests" in body["errors"][0]["message"]
        status, body, headers = await stack.request("GET", project, workspace)
        assert_429(status, body, headers, plane=True, window=settings.rate_limit_window)
        # Unknown routes count too (they are reads), and are refused the same way.
        status, body, headers = await stack.request("GET", "/api/v1/nowhere", workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)


async def test_budgets_are_per_endpoint_class(settings: Settings, workspace: Workspace, db: Any) -> None:
    settings = limited(settings, rate_limit_writes=3, rate_limit_definitions=3, rate_limit_reads=100)
    async with running_stack(settings) as stack:
        field = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="number")
        project = await plane_project(stack, workspace)
        status, prop, _ = await stack.request("POST", f"{project}work-item-properties/", workspace,
                                              json={"display_name": "Note", "property_type": "TEXT"})
        assert status == 201, prop
        # The definitions budget is spent now; reads and writes are untouched.
        status, body, headers = await stack.request("POST", FIELDS, workspace, json={"custom_field": {
            "name": "More", "subject_type": "Story", "value_type": "number"}})
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        status, body, headers = await write(stack, workspace, item(field, 1))
        assert status == 200, body
        assert rate(headers)[:2] == (3, 2)
        [written] = values_of(body)
        # Writes of both faces share the key's writes budget.
        values = f"{project}work-items/{uuid.uuid4()}/work-item-properties/{prop['id']}/values/"
        status, body, _ = await stack.request("POST", values, workspace, json={"value": "hello"})
        assert status == 201, body
        status, body, _ = await stack.request("DELETE", f"{VALUES}/{written['id']}", workspace)
        assert status == 204, body
        versions = await db.fetchval("SELECT count(*) FROM value_versions")
        status, body, headers = await write(stack, workspace, item(field, 2))
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        status, body, headers = await stack.request("PATCH", values, workspace, json={"value": "again"})
        assert_429(status, body, headers, plane=True, window=settings.rate_limit_window)
        # Nothing refused was applied; reads still pass.
        assert await db.fetchval("SELECT count(*) FROM value_versions") == versions
        status, body, headers = await stack.request("GET", values, workspace)
        assert status == 200 and body["value"] == "hello", body
        assert rate(headers)[0] == 100


async def test_budgets_are_per_key(settings: Settings, workspace: Workspace, other_workspace: Workspace,
                                   db: Any) -> None:
    settings = limited(settings, rate_limit_reads=2)
    second = Workspace(workspace.id, workspace.slug, (await issue_key(db, workspace.id, name="second")).secret)
    async with running_stack(settings, worker=False, relay=False) as stack:
        for _ in range(2):
            status, _, _ = await stack.request("GET", FIELDS, workspace)
            assert status == 200
        status, body, headers = await stack.request("GET", FIELDS, workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        for key in (second, other_workspace):  # another key of the same workspace, and another workspace's
            status, body, headers = await stack.request("GET", FIELDS, key)
            assert status == 200, body
            assert rate(headers)[:2] == (2, 1)


async def test_a_window_ends(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings, rate_limit_reads=1, rate_limit_window=1.5)
    async with running_stack(settings, worker=False, relay=False) as stack:
        status, _, _ = await stack.request("GET", FIELDS, workspace)
        assert status == 200
        status, body, headers = await stack.request("GET", FIELDS, workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        assert int(headers["Retry-After"]) <= 2
        await asyncio.sleep(1.6)
        status, _, headers = await stack.request("GET", FIELDS, workspace)
        assert status == 200 and rate(headers)[:2] == (1, 0)


async def test_failed_authentications_are_limited_per_address(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings, auth_failure_limit=3)
    async with running_stack(settings, worker=False, relay=False) as stack:
        # Successful requests do not count.
        for _ in range(5):
            status, _, _ = await stack.request("GET", FIELDS, workspace)
            assert status == 200
        wrong = {"X-API-Key": workspace.key[:-4] + "zzzz"}
        remaining = []
        for headers in (wrong, {}, {"Authorization": "Bearer nope"}):
            status, body, answer_headers = await stack.request("GET", FIELDS, None, headers=headers)
            assert status == 401, body
            remaining.append(rate(answer_headers)[:2])
        assert remaining == [(3, 2), (3, 1), (3, 0)]
        # Over the limit: refused before the key is looked at, even the right one, on both faces.
        status, body, headers = await stack.request("GET", FIELDS, workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        assert "failed authentications" in body["errors"][0]["message"]
        assert workspace.key not in orjson.dumps(body).decode()
        status, body, headers = await stack.request("GET", projects_path(workspace), workspace)
        assert_429(status, body, headers, plane=True, window=settings.rate_limit_window)
        status, body, _ = await stack.request("GET", "/healthz", None)
        assert status == 200


# Two gateway processes share one budget ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_process(settings: Settings, port: int) -> AsyncIterator[str]:
    """``python -m cfv gateway`` on ``port`` with ``settings`` (as CFV_* variables); yields its base URL."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CFV_")}
    env.update({f"CFV_{name.upper()}": value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                for name, value in settings.model_dump().items()})
    env.update({"CFV_HTTP_PORT": str(port), "CFV_LOG_LEVEL": "WARNING"})
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "cfv", "gateway", env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, "the gateway exited"
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/healthz") as answer:
                        if answer.status == 200:
                            break
                assert time.monotonic() < deadline, "the gateway did not come up"
                await asyncio.sleep(0.1)
        yield base
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_two_gateway_processes_share_one_budget(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings, rate_limit_reads=6, auth_failure_limit=2)
    async with gateway_process(settings, free_port()) as one, gateway_process(settings, free_port()) as two, \
            aiohttp.ClientSession(headers=workspace.headers) as http:
        async def get(base: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
            async with http.get(f"{base}{FIELDS}", headers=headers) as answer:
                return answer.status, await answer.json(), dict(answer.headers)

        remaining = []
        for base in (one, two, two, one, two, one):
            status, body, headers = await get(base)
            assert status == 200, body
            remaining.append(rate(headers)[1])
        assert remaining == [5, 4, 3, 2, 1, 0]  # one counter, whichever process answered
        for base in (one, two):
            status, body, headers = await get(base)
            assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)
        # So are failed authentications: one at each process spends the address's budget at both.
        for base in (one, two):
            status, _, _ = await get(base, {"X-API-Key": "cfv_wrong"})
            assert status == 401
        for base in (one, two):
            status, body, _ = await get(base)
            assert status == 429 and "failed authentications" in body["errors"][0]["message"], body


# Redis unavailable: the gateway serves, unlimited and without the headers ------------------------------------


async def test_without_redis_requests_are_served_unlimited(settings: Settings, workspace: Workspace) -> None:
    settings = limited(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_reads=1)
    async with running_stack(settings, worker=False, relay=False) as stack:
        for _ in range(3):
            status, body, headers = await stack.request("GET", FIELDS, workspace)
            assert status == 200, body
            assert not any(name in headers for name in RATE_HEADERS)
        status, _, headers = await stack.request("GET", FIELDS, None)
        assert status == 401 and "X-RateLimit-Limit" not in headers


async def test_a_silent_redis_does_not_hold_requests(settings: Settings, workspace: Workspace) -> None:
    """A Redis that accepts connections but never answers costs a request at most its timeout."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = limited(settings, redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout=0.2)
    try:
        async with running_stack(settings, worker=False, relay=False) as stack:
            for _ in range(5):
                began = time.monotonic()
                status, body, headers = await stack.request("GET", FIELDS, workspace)
                assert status == 200, body
                assert time.monotonic() - began < 1.5
                assert "X-RateLimit-Limit" not in headers
    finally:
        server.close()
        for writer in held:
            writer.close()


# Request limits ----------------------------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
async def small(settings: Settings, workspace: Workspace) -> AsyncIterator[tuple[Stack, str, str]]:
    """A stack with small request limits; (stack, a Kantata number field's id, a Plane TEXT property's values
    path)."""
    async with running_stack(limited(settings, max_json_depth=6, max_string_length=40, max_body_bytes=4096)) as stack:
        field = await stack.create_field(workspace, name="Note", subject_type="Story", value_type="string")
        project = await plane_project(stack, workspace)
        status, prop, _ = await stack.request("POST", f"{project}work-item-properties/", workspace,
                                              json={"display_name": "Note", "property_type": "TEXT"})
        assert status == 201, prop
        values = f"{project}work-items/{uuid.uuid4()}/work-item-properties/{prop['id']}/values/"
        yield stack, field["id"], values


def kantata_limit(status: int, body: Any, headers: dict[str, str], field: str | None, *words: str) -> None:
    assert status == 400, body
    [error] = assert_errors_shape(body)
    assert error["type"] == "limit_exceeded" and error["field"] == field, error
    for word in words:
        assert word in error["message"], error
    rate(headers)


async def test_json_depth_is_limited_on_both_faces(small: tuple[Stack, str, str], workspace: Workspace) -> None:
    stack, field_id, values = small
    value = {"subject_type": "Story", "subject_id": 1, "custom_field_id": field_id, "value": nested(4, "a")}
    # {custom_field_value: {value: [[[["a"]]]]}} is 6 deep: at the limit, so it gets as far as validation.
    status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": value})
    assert status == 422, body
    value["value"] = nested(5, "a")
    status, body, headers = await stack.request("POST", VALUES, workspace, json={"custom_field_value": value})
    kantata_limit(status, body, headers, "custom_field_value.value.0.0.0.0", "6 levels", "CFV_MAX_JSON_DEPTH")
    # Beyond what the JSON parser itself nests (1024), the answer is the same.
    status, body, headers = await stack.request("POST", VALUES, workspace, data=b"[" * 2000 + b"]" * 2000)
    kantata_limit(status, body, headers, None, "6 levels")
    status, body, _ = await stack.request("POST", values, workspace, json={"value": nested(6, "a")})
    # Plane's 400 names the field (here the place in it too): {"value.0.0.0.0.0": ["... 6 levels ..."]}.
    assert status == 400 and list(body) == ["value.0.0.0.0.0"] and "6 levels" in body["value.0.0.0.0.0"][0], body
    status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": {"name": nested(6)}})
    kantata_limit(status, body, _, "custom_field.name.0.0.0.0", "CFV_MAX_JSON_DEPTH")


async def test_long_strings_are_limited_on_both_faces(small: tuple[Stack, str, str], workspace: Workspace) -> None:
    stack, field_id, values = small
    item_ = {"subject_type": "Story", "subject_id": 1, "custom_field_id": field_id, "value": "é" * 40}
    status, body, _ = await stack.request("POST", VALUES, workspace, json={"custom_field_value": item_})
    assert status == 200, body
    item_["value"] = "é" * 41
    status, body, headers = await stack.request("POST", VALUES, workspace, json={"custom_field_values": [item_]})
    kantata_limit(status, body, headers, "custom_field_values.0.value", "41 characters", "40",
                  "CFV_MAX_STRING_LENGTH")
    status, body, headers = await stack.request("POST", VALUES, workspace, json={"k" * 41: 1})
    kantata_limit(status, body, headers, None, "key")
    status, body, _ = await stack.request("POST", values, workspace, json={"value": "x" * 41})
    assert status == 400 and set(body) == {"value"} and "CFV_MAX_STRING_LENGTH" in body["value"][0], body
    status, body, _ = await stack.request("POST", projects_path(workspace), workspace,
                                          json={"name": "n" * 41, "identifier": "LONG"})
    assert status == 400 and "CFV_MAX_STRING_LENGTH" in body["name"][0], body


async def test_large_bodies_are_413_on_both_faces(small: tuple[Stack, str, str], workspace: Workspace) -> None:
    stack, field_id, values = small
    big = [{"subject_type": "Story", "subject_id": n, "custom_field_id": field_id, "value": "x" * 30}
           for n in range(60)]
    assert len(orjson.dumps({"custom_field_values": big})) > 4096
    status, body, headers = await stack.request("POST", VALUES, workspace, json={"custom_field_values": big})
    assert status == 413, body
    [error] = assert_errors_shape(body)
    assert error["type"] == "request_too_large" and "4096 bytes" in error["message"], error
    rate(headers)
    status, body, headers = await stack.request("POST", values, workspace, data=b'{"value": "' + b"x" * 5000 + b'"}',
                                                headers={"Content-Type": "application/json"})
    assert status == 413 and set(body) == {"error"} and "4096 bytes" in body["error"], body
    rate(headers)


async def test_bulks_over_100_are_refused(stack: Stack, workspace: Workspace) -> None:
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    for method, body in (("POST", {"custom_field_values": [item(field, n, subject_id=n) for n in range(101)]}),
                         ("PUT", {"custom_field_values": [{"id": str(n), "value": 1} for n in range(1, 102)]})):
        status, answer, headers = await stack.request(method, VALUES, workspace, json=body)
        assert status == 400, answer
        assert any("100" in error["message"] for error in assert_errors_shape(answer)), answer
        rate(headers)
    status, answer, _ = await stack.request("DELETE", f"{VALUES}?ids=" + ",".join(map(str, range(1, 102))), workspace)
    assert status == 400 and "100" in assert_errors_shape(answer)[0]["message"], answer


async def test_counting_survives_redis_losing_its_scripts(settings: Settings, workspace: Workspace) -> None:
    """After Redis restarts (or its scripts are flushed) the gateway loads its scripts again: counting goes
    on, the budget is still enforced."""
    settings = limited(settings, rate_limit_reads=3)
    async with running_stack(settings, worker=False, relay=False) as stack:
        status, _, headers = await stack.request("GET", FIELDS, workspace)
        assert status == 200 and rate(headers)[:2] == (3, 2)
        client = Redis.from_url(settings.redis_url)
        try:
            await client.script_flush()
        finally:
            await client.aclose()
        seen = []
        for _ in range(2):
            status, _, headers = await stack.request("GET", FIELDS, workspace)
            seen.append((status, rate(headers)[1]))
        assert seen == [(200, 1), (200, 0)]
        status, body, headers = await stack.request("GET", FIELDS, workspace)
        assert_429(status, body, headers, plane=False, window=settings.rate_limit_window)


async def test_concurrent_checks_count_exactly(settings: Settings, workspace: Workspace) -> None:
    """Checks made together travel in one pipeline: each is still counted once, against one budget."""
    settings = limited(settings, rate_limit_reads=25)
    async with running_stack(settings, worker=False, relay=False) as stack:
        answers = await asyncio.gather(*[stack.request("GET", FIELDS, workspace) for _ in range(40)])
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 25 + [429] * 15
    assert sorted(rate(headers)[1] for status, _, headers in answers if status == 200) == list(range(25))
