"""The administration API: users, project memberships and API keys, for account administrators only."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from cfv.store import accounts
from support import Stack, Workspace
from support.kantata import FIELDS, assert_errors_shape

USERS = "/api/v1/users"
KEYS = "/api/v1/api_keys"
PROJECT_UUID = "5f0c6d1e-3b7a-4c1e-9d2a-0b6f7e8d9c01"


def only(body: dict[str, Any], key: str) -> dict[str, Any]:
    """The single object of a Kantata answer."""
    [result] = body["results"]
    assert result["key"] == key, body
    found: dict[str, Any] = body[key][result["id"]]
    assert found["id"] == result["id"]
    return found


def objects(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects of a Kantata listing, in order."""
    return [body[key][ref["id"]] for ref in body["results"]]


def error_of(status: int, body: Any, expected_status: int, type_: str) -> dict[str, Any]:
    assert status == expected_status, (status, body)
    [error] = assert_errors_shape(body)
    assert error["type"] == type_, error
    return error


async def owner_id(db: asyncpg.Connection[Any], workspace: Workspace) -> int:
    found: int = await db.fetchval("SELECT id FROM users WHERE workspace_id = $1 AND name = 'owner'", workspace.id)
    return found


async def first_key_id(db: asyncpg.Connection[Any], workspace: Workspace) -> int:
    found: int = await db.fetchval("SELECT min(id) FROM api_keys WHERE workspace_id = $1", workspace.id)
    return found


async def create_user(stack: Stack, admin: Workspace, **spec: Any) -> dict[str, Any]:
    status, body, _ = await stack.request("POST", USERS, admin, json={"user": spec})
    assert status == 201, body
    return only(body, "users")


async def create_key(stack: Stack, admin: Workspace, user_id: str, **spec: Any) -> dict[str, Any]:
    status, body, _ = await stack.request("POST", f"{USERS}/{user_id}/api_keys", admin, json=spec)
    assert status == 201, body
    return only(body, "api_keys")


async def user_with_key(stack: Stack, admin: Workspace, role: str, email: str) -> tuple[dict[str, Any], Workspace]:
    """A person with ``role`` and a fresh key of theirs (as a Workspace, for its headers)."""
    made = await create_user(stack, admin, name=email.split("@")[0], email=email, account_role=role)
    key = await create_key(stack, admin, made["id"])
    return made, Workspace(admin.id, admin.slug, key["key"])


async def works(stack: Stack, caller: Workspace) -> int:
    """The status of a read any valid key may make."""
    status, _, _ = await stack.request("GET", FIELDS, caller)
    return status


# --- users --------------------------------------------------------------------------------------------------


async def test_user_crud(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    owner = await owner_id(db, workspace)
    ada = await create_user(stack, workspace, name="Ada", email="Ada@Example.com", account_role="project_lead")
    assert ada["kind"] == "person" and ada["name"] == "Ada" and ada["account_role"] == "project_lead"
    assert ada["email"].lower() == "ada@example.com" and ada["deactivated_at"] is None
    assert set(ada) == {"id", "uuid", "kind", "name", "email", "account_role", "created_at", "updated_at",
                        "deactivated_at"}
    assert str(uuid.UUID(ada["uuid"])) == ada["uuid"]  # how work-item properties name the user (issue 13, bug 2)
    # The body may also be the bare object.
    status, body, _ = await stack.request("POST", USERS, workspace, json={
        "kind": "service", "name": "ci-bot", "account_role": "account_collaboration"})
    assert status == 201, body
    bot = only(body, "users")
    assert bot["kind"] == "service" and bot["email"] is None

    status, body, _ = await stack.request("GET", f"{USERS}/{ada['id']}", workspace)
    assert status == 200 and only(body, "users") == ada

    status, body, _ = await stack.request("GET", USERS, workspace)
    assert status == 200 and body["count"] == 3, body
    assert [u["id"] for u in objects(body, "users")] == [str(owner), ada["id"], bot["id"]]
    status, body, _ = await stack.request("GET", f"{USERS}?per_page=2&page=2", workspace)
    assert status == 200 and [u["id"] for u in objects(body, "users")] == [bot["id"]], body
    assert body["meta"] == {"count": 3, "page_count": 2, "page_number": 2, "page_size": 2}

    status, body, _ = await stack.request("PATCH", f"{USERS}/{ada['id']}", workspace, json={"user": {
        "name": "Ada Lovelace", "email": "ada@lovelace.example.com", "account_role": "reports_viewer"}})
    assert status == 200, body
    changed = only(body, "users")
    assert (changed["name"], changed["email"], changed["account_role"]) == (
        "Ada Lovelace", "ada@lovelace.example.com", "reports_viewer")
    assert changed["updated_at"] >= ada["updated_at"] and changed["created_at"] == ada["created_at"]
    status, body, _ = await stack.request("PATCH", f"{USERS}/{bot['id']}", workspace,
                                          json={"email": "bot@example.com"})
    assert status == 200 and only(body, "users")["email"] == "bot@example.com"
    status, body, _ = await stack.request("PATCH", f"{USERS}/{bot['id']}", workspace, json={"email": None})
    assert status == 200 and only(body, "users")["email"] is None

    status, body, _ = await stack.request("DELETE", f"{USERS}/{ada['id']}", workspace)
    assert status == 204 and body is None
    status, body, _ = await stack.request("GET", f"{USERS}/{ada['id']}", workspace)
    deactivated_at = only(body, "users")["deactivated_at"]
    assert deactivated_at is not None
    status, _, _ = await stack.request("DELETE", f"{USERS}/{ada['id']}", workspace)  # again: nothing changes
    assert status == 204
    status, body, _ = await stack.request("GET", f"{USERS}/{ada['id']}", workspace)
    assert only(body, "users")["deactivated_at"] == deactivated_at

    status, body, _ = await stack.request("PATCH", f"{USERS}/{ada['id']}", workspace, json={"active": True})
    assert status == 200 and only(body, "users")["deactivated_at"] is None

    for missing in ("999999", "0", "abc", "99999999999999999999"):
        status, body, _ = await stack.request("GET", f"{USERS}/{missing}", workspace)
        error_of(status, body, 404, "not_found")


async def test_user_validation_and_duplicates(stack: Stack, workspace: Workspace) -> None:
    ada = await create_user(stack, workspace, name="Ada", email="ada@example.com", account_role="project_lead")
    await create_user(stack, workspace, kind="service", name="ci-bot", account_role="project_creator")

    status, body, _ = await stack.request("POST", USERS, workspace, json={"user": {
        "name": "Bob", "email": "bob@example.com", "account_role": "boss"}})
    error = error_of(status, body, 422, "validation")
    assert error["field"] == "account_role" and error["valid"] == [
        "account_collaboration", "project_creator", "project_lead", "reports_viewer", "reports_viewer_with_cost",
        "account_admin"]
    assert "account_admin" in error["message"]

    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"name": "Bob", "account_role": "project_lead"}, 422, "email"),  # a person needs an email address
        ({"name": "Bob", "email": "not an email", "account_role": "project_lead"}, 422, "email"),
        ({"name": "", "email": "bob@example.com", "account_role": "project_lead"}, 400, "name"),
        ({"email": "bob@example.com", "account_role": "project_lead"}, 400, "name"),
        ({"name": "Bob", "email": "bob@example.com"}, 400, "account_role"),
        ({"name": "Bob", "email": "bob@example.com", "account_role": "project_lead", "kind": "robot"}, 400, "kind"),
        ({"name": "Bob", "email": "bob@example.com", "account_role": "project_lead", "admin": True}, 400, "admin"),
        ({"name": "Bob", "email": "bob@example.com", "account_role": 6}, 400, "account_role"),
    ]
    for spec, expected, field in cases:
        status, body, _ = await stack.request("POST", USERS, workspace, json={"user": spec})
        assert status == expected, (spec, body)
        errors = assert_errors_shape(body)
        assert field in {e["field"] for e in errors}, (spec, errors)

    status, body, _ = await stack.request("POST", USERS, workspace, data=b"{not json",
                                          headers={"Content-Type": "application/json"})
    error_of(status, body, 400, "validation")

    # Email addresses are unique in a workspace whatever their case; service accounts' names too.
    status, body, _ = await stack.request("POST", USERS, workspace, json={"user": {
        "name": "Other Ada", "email": "ADA@example.com", "account_role": "project_lead"}})
    assert error_of(status, body, 409, "conflict")["field"] == "email"
    status, body, _ = await stack.request("POST", USERS, workspace, json={"user": {
        "kind": "service", "name": "ci-bot", "account_role": "project_lead"}})
    assert error_of(status, body, 409, "conflict")["field"] == "name"
    other = await create_user(stack, workspace, name="Ada", email="ada2@example.com", account_role="project_lead")
    status, body, _ = await stack.request("PATCH", f"{USERS}/{other['id']}", workspace,
                                          json={"email": "Ada@Example.com"})
    assert error_of(status, body, 409, "conflict")["field"] == "email"

    for changes, expected in (({"name": None}, 422), ({"account_role": None}, 422), ({"email": None}, 422),
                              ({"account_role": "root"}, 422), ({"kind": "service"}, 400), ({"active": "yes"}, 400)):
        status, body, _ = await stack.request("PATCH", f"{USERS}/{ada['id']}", workspace, json=changes)
        assert status == expected, (changes, body)
        assert_errors_shape(body)
    status, body, _ = await stack.request("GET", f"{USERS}/{ada['id']}", workspace)
    assert only(body, "users") == ada  # nothing refused changed anything


async def test_the_last_active_administrator_stays(stack: Stack, workspace: Workspace,
                                                   db: asyncpg.Connection[Any]) -> None:
    owner = await owner_id(db, workspace)
    status, body, _ = await stack.request("DELETE", f"{USERS}/{owner}", workspace)
    assert "last active account administrator" in error_of(status, body, 409, "conflict")["message"]
    status, body, _ = await stack.request("PATCH", f"{USERS}/{owner}", workspace,
                                          json={"account_role": "project_lead"})
    error_of(status, body, 409, "conflict")
    status, body, _ = await stack.request("PATCH", f"{USERS}/{owner}", workspace, json={"active": False})
    error_of(status, body, 409, "conflict")
    status, body, _ = await stack.request("PATCH", f"{USERS}/{owner}", workspace,
                                          json={"account_role": "account_admin", "name": "owner"})
    assert status == 200, body  # staying an administrator is no demotion

    # A deactivated administrator does not count.
    grace, grace_key = await user_with_key(stack, workspace, "account_admin", "grace@example.com")
    status, _, _ = await stack.request("DELETE", f"{USERS}/{grace['id']}", workspace)
    assert status == 204
    status, body, _ = await stack.request("DELETE", f"{USERS}/{owner}", workspace)
    error_of(status, body, 409, "conflict")
    status, _, _ = await stack.request("PATCH", f"{USERS}/{grace['id']}", workspace, json={"active": True})
    assert status == 200

    # With another active administrator, the owner may go; then Grace is the last one (even for herself).
    status, body, _ = await stack.request("PATCH", f"{USERS}/{owner}", workspace,
                                          json={"account_role": "reports_viewer"})
    assert status == 200 and only(body, "users")["account_role"] == "reports_viewer"
    status, body, _ = await stack.request("DELETE", f"{USERS}/{grace['id']}", grace_key)
    error_of(status, body, 409, "conflict")
    # The owner's key is no administrator's any more: at once, on this gateway.
    status, body, _ = await stack.request("GET", USERS, workspace)
    error_of(status, body, 403, "forbidden")
    status, body, _ = await stack.request("PATCH", f"{USERS}/{owner}", grace_key,
                                          json={"account_role": "account_admin"})
    assert status == 200
    status, _, _ = await stack.request("GET", USERS, workspace)
    assert status == 200


# --- memberships --------------------------------------------------------------------------------------------


async def test_memberships(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    ada = await create_user(stack, workspace, name="Ada", email="ada@example.com", account_role="project_lead")
    path = f"{USERS}/{ada['id']}/memberships"

    status, body, _ = await stack.request("PUT", f"{path}/42", workspace, json={"permission": "time_logging"})
    assert status == 201, body
    made = only(body, "memberships")
    assert (made["id"], made["project"], made["permission"], made["user_id"]) == (
        "42", "42", "time_logging", ada["id"])
    status, body, _ = await stack.request("PUT", f"{path}/42", workspace,
                                          json={"membership": {"permission": "financial"}})
    assert status == 200 and only(body, "memberships")["permission"] == "financial", body
    # Projects are stored as subjects name them: a plain integer, a lower-case UUID.
    status, body, _ = await stack.request("PUT", f"{path}/{PROJECT_UUID.upper()}", workspace,
                                          json={"permission": "project_admin"})
    assert status == 201 and only(body, "memberships")["project"] == PROJECT_UUID, body
    status, body, _ = await stack.request("PUT", f"{path}/0042", workspace, json={"permission": "project_admin"})
    assert status == 200 and only(body, "memberships")["project"] == "42", body

    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and body["count"] == 2
    assert {m["project"]: m["permission"] for m in objects(body, "memberships")} == {
        "42": "project_admin", PROJECT_UUID: "project_admin"}
    stored = await db.fetch("SELECT project, permission FROM project_memberships WHERE user_id = $1 ORDER BY 1",
                            int(ada["id"]))
    assert [tuple(r) for r in stored] == [("42", "project_admin"), (PROJECT_UUID, "project_admin")]

    status, body, _ = await stack.request("PUT", f"{path}/42", workspace, json={"permission": "owner"})
    error = error_of(status, body, 422, "validation")
    assert error["field"] == "permission"
    assert error["valid"] == ["project_collaboration", "time_logging", "financial", "project_admin"]
    for project in ("marketing", "0", "-1", "4" * 25):
        status, body, _ = await stack.request("PUT", f"{path}/{project}", workspace,
                                              json={"permission": "financial"})
        assert error_of(status, body, 422, "validation")["field"] == "project", project
    for bad in ({}, {"permission": 3}, {"permission": "financial", "since": "now"}):
        status, body, _ = await stack.request("PUT", f"{path}/42", workspace, json=bad)
        assert status == 400, (bad, body)

    status, body, _ = await stack.request("DELETE", f"{path}/42", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("DELETE", f"{path}/42", workspace)
    error_of(status, body, 404, "not_found")
    status, body, _ = await stack.request("DELETE", f"{path}/marketing", workspace)
    error_of(status, body, 404, "not_found")
    status, body, _ = await stack.request("GET", path, workspace)
    assert [m["project"] for m in objects(body, "memberships")] == [PROJECT_UUID]
    status, body, _ = await stack.request("GET", f"{USERS}/999999/memberships", workspace)
    error_of(status, body, 404, "not_found")


# --- keys ---------------------------------------------------------------------------------------------------


async def test_keys_show_their_secret_once(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    ada = await create_user(stack, workspace, name="Ada", email="ada@example.com", account_role="project_lead")
    status, body, _ = await stack.request("POST", f"{USERS}/{ada['id']}/api_keys", workspace,
                                          json={"name": "laptop"})
    assert status == 201, body
    made = only(body, "api_keys")
    secret = made["key"]
    assert secret.startswith(f"cfv_{made['prefix']}_")
    assert (made["name"], made["user_id"], made["expires_at"], made["revoked_at"]) == (
        "laptop", ada["id"], None, None)
    assert {"id", "key", "prefix", "name", "user_id", "created_at", "expires_at", "revoked_at"} <= set(made)
    # An empty body is fine too.
    status, body, _ = await stack.request("POST", f"{USERS}/{ada['id']}/api_keys", workspace)
    assert status == 201, body
    second = only(body, "api_keys")

    assert await works(stack, Workspace(workspace.id, workspace.slug, secret)) == 200

    digest = await db.fetchval("SELECT secret_hash FROM api_keys WHERE id = $1", int(made["id"]))
    for path in (KEYS, f"{KEYS}?user_id={ada['id']}", f"{KEYS}/{made['id']}"):
        async with stack.http.get(stack.base + path, headers=workspace.headers) as answer:
            raw = await answer.read()
            assert answer.status == 200, raw
        assert secret.encode() not in raw and secret[len(f"cfv_{made['prefix']}_"):].encode() not in raw
        assert bytes(digest).hex().encode() not in raw
        for key in objects(orjson.loads(raw), "api_keys"):
            assert "key" not in key and not {"secret", "secret_hash", "hash", "public_key"} & set(key), key
            assert {"id", "prefix", "name", "user_id", "created_at", "expires_at", "revoked_at"} <= set(key)

    status, body, _ = await stack.request("GET", f"{KEYS}?user_id={ada['id']}", workspace)
    assert [k["id"] for k in objects(body, "api_keys")] == [made["id"], second["id"]] and body["count"] == 2
    status, body, _ = await stack.request("GET", KEYS, workspace)
    assert body["count"] == 3  # the workspace's first key (the owner's) too
    status, body, _ = await stack.request("GET", f"{KEYS}?per_page=1&page=3", workspace)
    assert [k["id"] for k in objects(body, "api_keys")] == [second["id"]]
    status, body, _ = await stack.request("GET", f"{KEYS}/{made['id']}", workspace)
    shown = only(body, "api_keys")
    assert {k: shown[k] for k in ("prefix", "name", "user_id", "created_at")} == {
        k: made[k] for k in ("prefix", "name", "user_id", "created_at")}

    status, body, _ = await stack.request("PATCH", f"{KEYS}/{made['id']}", workspace, json={"name": "old laptop"})
    assert status == 200 and only(body, "api_keys")["name"] == "old laptop"

    for query_string in ("user_id=abc", "user_id=-1"):
        status, body, _ = await stack.request("GET", f"{KEYS}?{query_string}", workspace)
        error_of(status, body, 400, "validation")
    status, body, _ = await stack.request("GET", f"{KEYS}?user_id=999999", workspace)
    error_of(status, body, 404, "not_found")


async def test_a_revoked_key_fails_at_once(stack: Stack, workspace: Workspace) -> None:
    _, ada = await user_with_key(stack, workspace, "account_admin", "ada@example.com")
    assert await works(stack, ada) == 200  # now cached by the gateway
    status, body, _ = await stack.request("GET", KEYS, workspace)
    ada_key = objects(body, "api_keys")[-1]

    status, body, _ = await stack.request("DELETE", f"{KEYS}/{ada_key['id']}", workspace)
    assert status == 204 and body is None
    status, body, _ = await stack.request("GET", FIELDS, ada)
    error_of(status, body, 401, "authentication")
    status, body, _ = await stack.request("GET", f"{KEYS}/{ada_key['id']}", workspace)
    revoked_at = only(body, "api_keys")["revoked_at"]
    assert revoked_at is not None

    status, _, _ = await stack.request("DELETE", f"{KEYS}/{ada_key['id']}", workspace)  # idempotent
    assert status == 204
    status, body, _ = await stack.request("GET", f"{KEYS}/{ada_key['id']}", workspace)
    assert only(body, "api_keys")["revoked_at"] == revoked_at
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{ada_key['id']}", workspace, json={"expires_at": None})
    error_of(status, body, 409, "conflict")
    status, body, _ = await stack.request("DELETE", f"{KEYS}/999999", workspace)
    error_of(status, body, 404, "not_found")

    # An administrator may revoke their own key: the next request with it fails.
    status, body, _ = await stack.request("GET", KEYS, workspace)
    own = objects(body, "api_keys")[0]
    _, grace = await user_with_key(stack, workspace, "account_admin", "grace@example.com")
    status, _, _ = await stack.request("DELETE", f"{KEYS}/{own['id']}", workspace)
    assert status == 204
    status, body, _ = await stack.request("GET", USERS, workspace)
    error_of(status, body, 401, "authentication")
    assert await works(stack, grace) == 200


async def test_expiry(stack: Stack, workspace: Workspace) -> None:
    ada, ada_key = await user_with_key(stack, workspace, "project_lead", "ada@example.com")
    assert await works(stack, ada_key) == 200
    status, body, _ = await stack.request("GET", f"{KEYS}?user_id={ada['id']}", workspace)
    key_id = objects(body, "api_keys")[0]["id"]

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{key_id}", workspace, json={"expires_at": past})
    assert status == 200 and only(body, "api_keys")["status"] == "expired", body
    status, body, _ = await stack.request("GET", FIELDS, ada_key)
    assert "expired" in error_of(status, body, 401, "authentication")["message"]
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{key_id}", workspace, json={"expires_at": None})
    assert status == 200 and only(body, "api_keys")["expires_at"] is None
    assert await works(stack, ada_key) == 200

    future = datetime.now(UTC) + timedelta(days=3)
    made = await create_key(stack, workspace, ada["id"], expires_at=future.isoformat())
    assert datetime.fromisoformat(made["expires_at"]) == future
    made = await create_key(stack, workspace, ada["id"], expires_at="2999-01-02T03:04:05")  # UTC without offset
    assert datetime.fromisoformat(made["expires_at"]) == datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    before = datetime.now(UTC)
    made = await create_key(stack, workspace, ada["id"], expires_in_days=30)
    expires = datetime.fromisoformat(made["expires_at"])
    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    assert await works(stack, Workspace(workspace.id, workspace.slug, made["key"])) == 200

    path = f"{USERS}/{ada['id']}/api_keys"
    for spec, expected in (({"expires_at": past}, 422), ({"expires_at": "soon"}, 422),
                           ({"expires_at": "2999-13-01T00:00:00Z"}, 422),
                           ({"expires_at": future.isoformat(), "expires_in_days": 3}, 422),
                           ({"expires_in_days": 0}, 400), ({"expires_in_days": "3"}, 400),
                           ({"expires_in_days": 10**9}, 400), ({"secret": "mine"}, 400)):
        status, body, _ = await stack.request("POST", path, workspace, json=spec)
        assert status == expected, (spec, body)
        errors = assert_errors_shape(body)
        if expected == 422:
            assert errors[0]["type"] == "validation" and errors[0]["field"] == "expires_at", errors
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{key_id}", workspace, json={"expires_at": "later"})
    error_of(status, body, 422, "validation")
    status, body, _ = await stack.request("PATCH", f"{KEYS}/{key_id}", workspace, json={})
    error_of(status, body, 400, "validation")


async def test_a_deactivated_users_keys_fail(stack: Stack, workspace: Workspace) -> None:
    ada, ada_key = await user_with_key(stack, workspace, "project_lead", "ada@example.com")
    assert await works(stack, ada_key) == 200
    status, _, _ = await stack.request("DELETE", f"{USERS}/{ada['id']}", workspace)
    assert status == 204
    status, body, _ = await stack.request("GET", FIELDS, ada_key)
    error_of(status, body, 401, "authentication")
    status, body, _ = await stack.request("POST", f"{USERS}/{ada['id']}/api_keys", workspace, json={})
    error_of(status, body, 409, "conflict")
    status, _, _ = await stack.request("PATCH", f"{USERS}/{ada['id']}", workspace, json={"active": True})
    assert status == 200
    assert await works(stack, ada_key) == 200


async def test_changes_wait_for_the_workspace_lock(stack: Stack, workspace: Workspace,
                                                  db: asyncpg.Connection[Any]) -> None:
    """Every change takes the lock the worker applies a batch under: it waits for the batches in flight."""
    ada, _ = await user_with_key(stack, workspace, "project_lead", "ada@example.com")
    status, body, _ = await stack.request("GET", f"{KEYS}?user_id={ada['id']}", workspace)
    key_id = objects(body, "api_keys")[0]["id"]
    changes: list[tuple[str, str, Any, int]] = [
        ("POST", USERS, {"name": "Bob", "email": "bob@example.com", "account_role": "project_lead"}, 201),
        ("PATCH", f"{USERS}/{ada['id']}", {"account_role": "reports_viewer"}, 200),
        ("PUT", f"{USERS}/{ada['id']}/memberships/42", {"permission": "financial"}, 201),
        ("DELETE", f"{USERS}/{ada['id']}/memberships/42", None, 204),
        ("POST", f"{USERS}/{ada['id']}/api_keys", {}, 201),
        ("PATCH", f"{KEYS}/{key_id}", {"name": "renamed"}, 200),
        ("DELETE", f"{KEYS}/{key_id}", None, 204),
        ("DELETE", f"{USERS}/{ada['id']}", None, 204),
    ]
    for method, path, body, expected in changes:
        async with db.transaction():  # as a worker applying a batch of the workspace would
            await db.execute("SELECT pg_advisory_xact_lock($1)", workspace.id)
            change = asyncio.create_task(stack.request(method, path, workspace, json=body))
            status, _, _ = await stack.request("GET", f"{USERS}/{ada['id']}", workspace)  # reads do not wait
            assert status == 200
            await asyncio.sleep(0.3)
            assert not change.done(), (method, path)
        status, answer, _ = await asyncio.wait_for(change, 10)
        assert status == expected, (method, path, answer)


# --- who may ------------------------------------------------------------------------------------------------


def endpoints(user_id: int | str, key_id: int | str) -> list[tuple[str, str, Any]]:
    """Every admin endpoint, naming ``user_id`` and ``key_id`` where it names one."""
    user = f"{USERS}/{user_id}"
    return [
        ("GET", USERS, None),
        ("POST", USERS, {"user": {"name": "Eve", "email": "eve@example.com", "account_role": "account_admin"}}),
        ("GET", user, None),
        ("PATCH", user, {"account_role": "account_admin"}),
        ("DELETE", user, None),
        ("GET", f"{user}/memberships", None),
        ("PUT", f"{user}/memberships/42", {"permission": "project_admin"}),
        ("DELETE", f"{user}/memberships/42", None),
        ("POST", f"{user}/api_keys", {"name": "mine now"}),
        ("GET", KEYS, None),
        ("GET", f"{KEYS}?user_id={user_id}", None),
        ("GET", f"{KEYS}/{key_id}", None),
        ("PATCH", f"{KEYS}/{key_id}", {"expires_at": None}),
        ("DELETE", f"{KEYS}/{key_id}", None),
    ]


@pytest.mark.parametrize("role", ["account_collaboration", "reports_viewer_with_cost"])
async def test_only_administrators_may(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any],
                                       role: str) -> None:
    bob, bob_key = await user_with_key(stack, workspace, role, "bob@example.com")
    await accounts.set_membership(db, workspace.id, int(bob["id"]), "42", "project_admin")
    owner, owner_key = await owner_id(db, workspace), await first_key_id(db, workspace)
    counts = "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM api_keys)"
    before = await db.fetchrow(counts)
    for user_id, key_id in ((owner, owner_key), (bob["id"], owner_key), (999999, 999999), ("x", "x")):
        for method, path, body in endpoints(user_id, key_id):
            status, answer, _ = await stack.request(method, path, bob_key, json=body)
            error = error_of(status, answer, 403, "forbidden")
            assert "administrators" in error["message"], (method, path)
    assert await db.fetchrow(counts) == before
    assert await db.fetchval("SELECT count(*) FROM project_memberships") == 1
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL OR expires_at IS NOT NULL"
                             ) == 0
    assert await works(stack, workspace) == 200


async def test_other_workspaces_ids_are_not_found(stack: Stack, workspace: Workspace, other_workspace: Workspace,
                                                  db: asyncpg.Connection[Any]) -> None:
    theirs = await owner_id(db, other_workspace)
    their_key = await first_key_id(db, other_workspace)
    await accounts.set_membership(db, other_workspace.id, theirs, "42", "financial")
    for (method, path, body), (_, unknown, _) in zip(endpoints(theirs, their_key), endpoints(999999, 999999),
                                                     strict=True):
        if path in (USERS, KEYS):
            continue  # names no id
        status, answer, _ = await stack.request(method, path, workspace, json=body)
        error = error_of(status, answer, 404, "not_found")
        status, missing, _ = await stack.request(method, unknown, workspace, json=body)
        assert status == 404 and missing["errors"][0]["message"] == error["message"], (method, path, missing)
    # Their listings are not ours either, and nothing of theirs changed.
    status, body, _ = await stack.request("GET", USERS, workspace)
    assert str(theirs) not in body["users"]
    status, body, _ = await stack.request("GET", KEYS, workspace)
    assert str(their_key) not in body["api_keys"]
    row = await db.fetchrow("SELECT u.account_role, u.deactivated_at, k.revoked_at, k.expires_at FROM users u "
                            "JOIN api_keys k ON k.user_id = u.id WHERE k.id = $1", their_key)
    assert row is not None and tuple(row) == ("account_admin", None, None, None)
    assert await db.fetchval("SELECT permission FROM project_memberships WHERE user_id = $1", theirs) == "financial"
    assert await db.fetchval("SELECT count(*) FROM users WHERE workspace_id = $1", other_workspace.id) == 1
    assert await works(stack, other_workspace) == 200
