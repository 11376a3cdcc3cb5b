"""Helpers shared by the Kantata-face integration tests (requests, answers and database checks)."""

from __future__ import annotations

from typing import Any

import asyncpg

from support import Stack, Workspace

FIELDS = "/api/v1/custom_fields"
VALUES = "/api/v1/custom_field_values"
OPERATIONS = "/api/v1/operations"


def item(field: dict[str, Any], value: Any, subject_id: int | str = 7, subject_type: str | None = None
         ) -> dict[str, Any]:
    """One value to write to ``field`` (on a subject of the field's own type unless told otherwise)."""
    return {"subject_type": subject_type or field["subject_type"], "subject_id": subject_id,
            "custom_field_id": int(field["id"]), "value": value}


async def write(stack: Stack, workspace: Workspace, *items: dict[str, Any], bulk: bool | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    """POST values: one under ``custom_field_value``, several (or ``bulk=True``) under ``custom_field_values``."""
    plural = len(items) != 1 if bulk is None else bulk
    body = {"custom_field_values": list(items)} if plural else {"custom_field_value": items[0]}
    return await stack.request("POST", VALUES, workspace, json=body, headers=headers)


def values_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The values of a Kantata answer, in the order of its ``results``."""
    assert all(ref["key"] == "custom_field_values" for ref in body["results"]), body
    return [body["custom_field_values"][ref["id"]] for ref in body["results"]]


def assert_errors_shape(body: Any) -> list[dict[str, Any]]:
    """Check ``{"errors": [{type, message, field, ...}]}`` and return the errors."""
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    errors: list[dict[str, Any]] = body["errors"]
    assert errors, body
    for error in errors:
        assert {"type", "message", "field"} <= set(error), error
        assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
    return errors


async def key_id(db: asyncpg.Connection[Any], workspace: Workspace) -> int:
    """The id of the workspace's (only) API key: values and events name it as ``key:<id>``."""
    found: int = await db.fetchval("SELECT id FROM api_keys WHERE workspace_id = $1", workspace.id)
    return found


async def counts(db: asyncpg.Connection[Any]) -> tuple[int, int, int]:
    """(value_versions, current_values, outbox) row counts: the outbox's value events (definition events, of the
    fields a test defines, are not counted)."""
    row = await db.fetchrow("SELECT (SELECT count(*) FROM value_versions) AS v, "
                            "(SELECT count(*) FROM current_values) AS c, "
                            "(SELECT count(*) FROM outbox WHERE type LIKE 'cfv.value.%') AS o")
    assert row is not None
    return row["v"], row["c"], row["o"]

