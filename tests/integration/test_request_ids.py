"""Request ids (issue 12): every request has one (the client's ``X-Request-ID`` when usable, else a fresh UUID),
echoed in the answer, bound to the gateway's and the worker's log lines about it, carried in the command and
kept as the change event's ``correlationid``; one access log line per request, never with the key."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from cfv.settings import Settings
from support import EventCollector, Stack, Workspace, captured_logs, running_stack, wait_for
from support.pipeline import number_field

VALUES = "/api/v1/custom_field_values"


def _write(field_id: int, subject_id: int, value: int) -> dict[str, Any]:
    return {"custom_field_value": {"subject_type": "Story", "subject_id": subject_id, "custom_field_id": field_id,
                                   "value": value}}


async def test_a_request_id_goes_from_the_request_to_the_logs_and_the_event(
        stack: Stack, workspace: Workspace, events: EventCollector, db: asyncpg.Connection[Any]) -> None:
    field_id = await number_field(stack, workspace)
    with captured_logs() as logged:
        status, body, headers = await stack.request("POST", VALUES, workspace, json=_write(field_id, 1, 5),
                                                    headers={"X-Request-ID": "req-2026:abc/1"})

        async def worker_logged() -> bool:  # it logs once its transaction committed: maybe after the answer
            return any("req-2026:abc/1" in e.get("request_ids", []) for e in logged if e["event"] == "batch applied")
        await wait_for(worker_logged, 10, "the worker's line naming the request")
    assert status == 200, body
    assert headers["X-Request-ID"] == "req-2026:abc/1"
    [event] = await events.wait_for_count(1)
    assert event["correlationid"] == "req-2026:abc/1"
    assert event["data"]["after"]["value"] == 5

    [access] = [e for e in logged if e["event"] == "request" and e.get("request_id") == "req-2026:abc/1"]
    assert access["method"] == "POST" and access["route"] == VALUES and access["status"] == 200
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["key_id"] == await db.fetchval("SELECT id FROM api_keys WHERE workspace_id = $1", workspace.id)
    applied = [e for e in logged if e["event"] == "batch applied"]
    assert any("req-2026:abc/1" in e.get("request_ids", []) for e in applied), applied
    assert workspace.key not in repr(logged)


async def test_without_a_usable_request_id_the_gateway_makes_one(
        stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    field_id = await number_field(stack, workspace)
    made = []
    for n, given in enumerate([None, "", "has space", "x" * 129, "caf\u00e9"], start=1):
        headers = {} if given is None else {"X-Request-ID": given}
        status, body, answered = await stack.request("POST", VALUES, workspace, json=_write(field_id, n, n),
                                                     headers=headers)
        assert status == 200, body
        made.append(answered["X-Request-ID"])
        assert str(uuid.UUID(made[-1])) == made[-1], made[-1]  # a fresh UUID, not what was sent
    assert len(set(made)) == len(made)
    arrived = await events.wait_for_count(len(made))
    assert {e["data"]["subject_id"]: e["correlationid"] for e in arrived} == {
        str(n): request_id for n, request_id in enumerate(made, start=1)}


async def test_every_answer_has_a_request_id_and_an_access_line(stack: Stack, workspace: Workspace) -> None:
    """Errors, unauthenticated requests, unknown paths and probes too; the route is the template, not the path."""
    with captured_logs() as logged:
        unknown = await stack.request("GET", "/api/v1/custom_fields/999999", workspace)
        anonymous = await stack.request("GET", "/api/v1/custom_fields", None)
        nowhere = await stack.request("GET", "/no/such/path/42", None)
        live = await stack.request("GET", "/livez", None, headers={"X-Request-ID": "probe-1"})
    assert [r[0] for r in (unknown, anonymous, nowhere, live)] == [404, 401, 404, 200]
    assert live[2]["X-Request-ID"] == "probe-1"
    lines = [e for e in logged if e["event"] == "request"]
    assert [(e["route"], e["status"]) for e in lines] == [
        ("/api/v1/custom_fields/{field_id}", 404), ("/api/v1/custom_fields", 401), ("<unmatched>", 404),
        ("/livez", 200)]
    assert [e["request_id"] for e in lines] == [r[2]["X-Request-ID"] for r in (unknown, anonymous, nowhere, live)]
    assert lines[0]["key_id"] is not None and lines[1]["key_id"] is None


async def test_the_access_log_can_be_turned_off(settings: Settings, workspace: Workspace) -> None:
    quiet = settings.model_copy(update={"access_log": False})
    async with running_stack(quiet, worker=False, relay=False) as stack:
        with captured_logs() as logged:
            status, _, headers = await stack.request("GET", "/api/v1/custom_fields", workspace)
    assert status == 200 and headers["X-Request-ID"]
    assert not [e for e in logged if e["event"] == "request"]
