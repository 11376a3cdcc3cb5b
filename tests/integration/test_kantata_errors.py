"""Error answers of the Kantata face: authentication, malformed bodies, size limit, unknown routes."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from support import Stack, Workspace
from support.kantata import FIELDS, VALUES, assert_errors_shape, counts, item, values_of, write


async def test_requests_without_a_valid_key_are_401(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    body = {"custom_field_value": item(points, 1)}
    wrong = workspace.key[:-4] + ("aaaa" if not workspace.key.endswith("aaaa") else "bbbb")
    for headers in ({}, {"X-API-Key": wrong}, {"X-API-Key": "   "}, {"Authorization": f"Bearer {wrong}"},
                    {"Authorization": "Bearer "}, {"Authorization": f"Basic {workspace.key}"},
                    {"Authorization": workspace.key}):
        for method, path, json in (("POST", VALUES, body), ("GET", FIELDS, None),
                                   ("GET", f"{FIELDS}/{points['id']}", None),
                                   ("GET", "/api/v1/operations/00000000-0000-0000-0000-000000000000", None),
                                   ("GET", "/api/v1/nowhere", None)):
            status, answer, response_headers = await stack.request(method, path, None, json=json, headers=headers)
            assert status == 401, (headers, path, answer)
            assert response_headers["Content-Type"].startswith("application/json")
            [error] = assert_errors_shape(answer)
            assert error["type"] == "authentication"
            assert workspace.key not in error["message"]
    assert await counts(db) == (0, 0, 0)


async def test_a_revoked_key_is_refused(stack: Stack, workspace: Workspace, db: Any) -> None:
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1", workspace.id)
    status, body, _ = await stack.request("GET", FIELDS, workspace)
    assert status == 401 and assert_errors_shape(body)[0]["type"] == "authentication"


async def test_bearer_authorization_works_like_x_api_key(stack: Stack, workspace: Workspace,
                                                         other_workspace: Workspace) -> None:
    bearer = {"Authorization": f"Bearer {workspace.key}"}
    status, body, _ = await stack.request("POST", FIELDS, None, headers=bearer, json={"custom_field": {
        "name": "Points", "subject_type": "Story", "value_type": "number"}})
    assert status == 201, body
    field = next(iter(body["custom_fields"].values()))
    status, body, _ = await stack.request("POST", VALUES, None, headers={"Authorization": f"bearer  {workspace.key}"},
                                          json={"custom_field_value": item(field, 5)})
    assert status == 200, body
    assert values_of(body)[0]["value"] == 5
    status, body, _ = await stack.request("GET", FIELDS, None, headers=bearer)
    assert status == 200 and list(body["custom_fields"]) == [field["id"]]
    # The key decides the workspace: the other tenant does not see the field.
    status, body, _ = await stack.request("GET", FIELDS, None,
                                          headers={"Authorization": f"Bearer {other_workspace.key}"})
    assert status == 200 and body["count"] == 0


async def test_malformed_json_is_400(stack: Stack, workspace: Workspace, db: Any) -> None:
    for raw in (b"{", b"", b"not json", b'{"custom_field_value": {"value": 1,}}', b"\xff\xfe",
                b"[]", b"null", b"42"):
        for path in (VALUES, FIELDS):
            status, body, _ = await stack.request("POST", path, workspace, data=raw,
                                                  headers={"Content-Type": "application/json"})
            assert status == 400, (raw, path, body)
            assert all(e["type"] == "validation" for e in assert_errors_shape(body))
    status, body, _ = await stack.request("POST", VALUES, workspace, data=b"{",
                                          headers={"Content-Type": "application/json"})
    assert "not valid JSON" in body["errors"][0]["message"]
    assert await counts(db) == (0, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM custom_fields") == 0


async def test_both_or_neither_key_is_400(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    one = item(points, 1)
    for body in ({"custom_field_value": one, "custom_field_values": [one]}, {},
                 {"custom_field_value": None}, {"custom_field_value": None, "custom_field_values": None}):
        status, answer, _ = await stack.request("POST", VALUES, workspace, json=body)
        assert status == 400, (body, answer)
        errors = assert_errors_shape(answer)
        assert any("exactly one of custom_field_value and custom_field_values" in e["message"] for e in errors)
    assert await counts(db) == (0, 0, 0)


async def test_body_over_the_limit_is_413_in_json(stack: Stack, workspace: Workspace, db: Any) -> None:
    assert stack.settings.max_body_bytes == 1_048_576
    points = await stack.create_field(workspace, name="Notes", subject_type="Story", value_type="string")
    padding = "x" * (stack.settings.max_body_bytes + 10)
    for path, json in ((VALUES, {"custom_field_value": item(points, padding)}),
                       (FIELDS, {"custom_field": {"name": "Big", "subject_type": "Story", "value_type": "string",
                                                  "description": padding}})):
        status, body, headers = await stack.request("POST", path, workspace, json=json)
        assert status == 413, body
        assert headers["Content-Type"].startswith("application/json")
        [error] = assert_errors_shape(body)
        assert error["type"] == "request_too_large"
        assert str(stack.settings.max_body_bytes) in error["message"]
    assert await counts(db) == (0, 0, 0)
    # Just under the limit is read (and here refused for its content, not its size).
    near = {"custom_field_value": item(points, "y" * (stack.settings.max_body_bytes - 200))}
    status, body, _ = await stack.request("POST", VALUES, workspace, json=near)
    assert status == 422, body
    assert "at most 10000 characters" in body["errors"][0]["message"]


async def test_unknown_routes_and_methods_answer_json(stack: Stack, workspace: Workspace) -> None:
    for path in ("/api/v1/nowhere", "/api/v2/custom_fields", "/api/v1/custom_fields/1/choices", "/nowhere"):
        status, body, headers = await stack.request("GET", path, workspace)
        assert status == 404, (path, body)
        assert headers["Content-Type"].startswith("application/json")
        assert assert_errors_shape(body)[0]["type"] == "not_found"
    status, body, _ = await stack.request("GET", "/nowhere", None)  # outside /api/ no key is needed to hear 404
    assert status == 404 and assert_errors_shape(body)[0]["type"] == "not_found"
    status, body, headers = await stack.request("PATCH", VALUES, workspace, json={})  # PUT updates values now
    assert status == 405, body
    assert headers["Content-Type"].startswith("application/json")
    assert assert_errors_shape(body)[0]["type"] == "method_not_allowed"


async def test_health_needs_no_key(stack: Stack) -> None:
    status, body, _ = await stack.request("GET", "/healthz", None)
    assert (status, body) == (200, {"status": "ok"})


async def test_idempotency_key_too_long_is_400(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 1), headers={"Idempotency-Key": "k" * 256})
    assert status == 400, body
    [error] = assert_errors_shape(body)
    assert error["field"] == "Idempotency-Key"
    assert await counts(db) == (0, 0, 0)
    status, body, _ = await write(stack, workspace, item(points, 1), headers={"Idempotency-Key": "k" * 255})
    assert status == 200, body


async def raw_post(stack: Stack, headers: bytes, body: bytes) -> tuple[int, Any]:
    """POST values with header bytes exactly as given (aiohttp's client would refuse to send some)."""
    reader, writer = await asyncio.open_connection(stack.settings.http_host, stack.settings.http_port)
    try:
        writer.write(b"POST " + VALUES.encode() + b" HTTP/1.1\r\nHost: cfv\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) + headers + b"\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return int(head.split()[1]), orjson.loads(payload)


async def test_header_bytes_that_are_not_utf8_get_json_answers(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    body = orjson.dumps({"custom_field_value": item(points, 1)})
    key = workspace.key.encode()
    for headers in (b"X-API-Key: caf\xe9\r\n", b"Authorization: Bearer caf\xe9\r\n"):
        status, answer = await raw_post(stack, headers, body)
        assert status == 401, answer
        assert assert_errors_shape(answer)[0]["type"] == "authentication"
    status, answer = await raw_post(stack, b"X-API-Key: " + key + b"\r\nIdempotency-Key: caf\xe9\r\n", body)
    assert status == 400, answer
    [error] = assert_errors_shape(answer)
    assert (error["type"], error["field"]) == ("validation", "Idempotency-Key")
    assert await counts(db) == (0, 0, 0)
    status, answer = await raw_post(stack, b"X-API-Key: " + key + b"\r\nIdempotency-Key: caf\xc3\xa9\r\n", body)
    assert status == 200, answer  # UTF-8 is fine
    setter = values_of(answer)[0]["setter"]
    assert await db.fetchval("SELECT key FROM idempotency_keys") == f"{setter}|café"  # scoped to its API key
