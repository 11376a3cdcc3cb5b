"""The command line's keys and users (``cfv key ...``, ``cfv user ...``), against the test database.

The CLI runs ``asyncio.run`` itself, so each invocation runs in a thread, off the tests' event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cfv.cli import main
from click.testing import CliRunner, Result
from support import Stack, Workspace, wait_for
from support.kantata import FIELDS, assert_errors_shape, item, write

Cli = Callable[..., Awaitable[Result]]
ROLES = ("account_collaboration", "project_creator", "project_lead", "reports_viewer", "reports_viewer_with_cost",
         "account_admin")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Cli:
    """Run ``cfv ARGS...`` against this test's database; the result has ``exit_code``, ``stdout``, ``stderr``."""
    monkeypatch.setenv("CFV_DATABASE_URL", database_url)
    monkeypatch.setenv("CFV_LOG_LEVEL", "WARNING")

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, main, list(args))

    return run


async def key_row(db: asyncpg.Connection[Any], secret: str) -> asyncpg.Record:
    """The stored key of ``secret`` (found by its hash), with its user."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT k.*, u.name AS user_name, u.kind, u.email, u.account_role FROM api_keys k "
        "JOIN users u ON u.id = k.user_id WHERE k.secret_hash = $1", hashlib.sha256(secret.encode()).digest())
    assert row is not None
    return row


def printed_key(result: Result) -> str:
    """The key ``cfv key create`` printed: its standard output is that one line."""
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfv_"), result.stdout
    assert "cannot be shown again" in result.stderr
    return lines[0]


async def test_key_create_for_the_owner_by_default(cli: Cli, db: asyncpg.Connection[Any],
                                                   workspace: Workspace) -> None:
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--name", "deploy"))
    row = await key_row(db, secret)
    assert (row["user_name"], row["kind"], row["account_role"], row["name"], row["expires_at"], row["workspace_id"]
            ) == ("owner", "service", "account_admin", "deploy", None, workspace.id)
    assert row["public_key"] is not None and secret.startswith(f"cfv_{row['prefix']}_")

    result = await cli("key", "create", "--workspace", "nowhere")
    assert result.exit_code == 1 and "no workspace nowhere" in result.output


async def test_key_create_expires(cli: Cli, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    before = datetime.now(UTC)
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--expires", "30d"))
    expires = (await key_row(db, secret))["expires_at"]
    assert before + timedelta(days=30) <= expires <= datetime.now(UTC) + timedelta(days=30)
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--expires", "12h"))
    expires = (await key_row(db, secret))["expires_at"]
    assert before + timedelta(hours=12) <= expires <= datetime.now(UTC) + timedelta(hours=12)

    for when, expected in (("2999-01-31", datetime(2999, 1, 31, tzinfo=UTC)),
                           ("2999-01-31T12:00:00+02:00", datetime(2999, 1, 31, 10, tzinfo=UTC)),
                           ("2999-01-31T12:00:00", datetime(2999, 1, 31, 12, tzinfo=UTC))):
        secret = printed_key(await cli("key", "create", "--workspace", "acme", "--expires", when))
        assert (await key_row(db, secret))["expires_at"] == expected, when

    keys_before = await db.fetchval("SELECT count(*) FROM api_keys")
    for when in ("2000-01-01", "yesterday", "30x", "0d", "2999-02-30"):
        result = await cli("key", "create", "--workspace", "acme", "--expires", when)
        assert result.exit_code == 2 and "--expires" in result.output and not result.stdout.strip(), (when,
                                                                                                   result.output)
    assert await db.fetchval("SELECT count(*) FROM api_keys") == keys_before


async def test_key_create_for_people_and_service_accounts(cli: Cli, db: asyncpg.Connection[Any],
                                                          workspace: Workspace) -> None:
    # An email nobody has, with --role: that person is made.
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--user", "ada@example.com",
                                   "--role", "project_lead", "--user-name", "Ada"))
    row = await key_row(db, secret)
    assert (row["user_name"], row["kind"], row["email"], row["account_role"]) == (
        "Ada", "person", "ada@example.com", "project_lead")
    ada = row["user_id"]
    # Named again, by email (any case) or id, the same person gets another key.
    for ref in ("ADA@example.com", str(ada)):
        secret = printed_key(await cli("key", "create", "--workspace", "acme", "--user", ref))
        assert (await key_row(db, secret))["user_id"] == ada
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--user", str(ada), "--role",
                                   "project_lead"))  # the role they have: fine
    assert (await key_row(db, secret))["user_id"] == ada

    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--service", "ci-bot", "--role",
                                   "project_creator"))
    row = await key_row(db, secret)
    assert (row["user_name"], row["kind"], row["email"], row["account_role"]) == (
        "ci-bot", "service", None, "project_creator")
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--service", "ci-bot"))
    assert (await key_row(db, secret))["user_id"] == row["user_id"]

    users_before = await db.fetchval("SELECT count(*) FROM users")
    keys_before = await db.fetchval("SELECT count(*) FROM api_keys")
    refused = [
        (["--user", "bob@example.com"], 1, "--role"),  # no such person, and no role to make them with
        (["--user", "999999"], 1, "no user 999999"),
        (["--user", "bob", "--role", "project_lead"], 1, "by email"),
        (["--user", "bob@", "--role", "project_lead"], 1, "email"),
        (["--service", "nobody"], 1, "--role"),
        (["--user", str(ada), "--role", "account_admin"], 1, "exists with role project_lead"),
        (["--user", str(ada), "--service", "ci-bot"], 2, "not both"),
        (["--role", "project_lead"], 2, "--user EMAIL or --service NAME"),
        (["--user", "carol@example.com", "--role", "boss"], 2, "account_collaboration"),
    ]
    for args, code, message in refused:
        result = await cli("key", "create", "--workspace", "acme", *args)
        assert result.exit_code == code and message in result.output, (args, result.output)
        assert not result.stdout.strip(), args
    assert await db.fetchval("SELECT count(*) FROM users") == users_before
    assert await db.fetchval("SELECT count(*) FROM api_keys") == keys_before
    result = await cli("key", "create", "--workspace", "acme", "--role", "boss", "--user", "x@example.com")
    assert all(role in result.output for role in ROLES), result.output


async def test_key_create_refuses_a_deactivated_user(cli: Cli, db: asyncpg.Connection[Any],
                                                     workspace: Workspace) -> None:
    printed_key(await cli("key", "create", "--workspace", "acme", "--user", "ada@example.com", "--role",
                          "project_lead"))
    await db.execute("UPDATE users SET deactivated_at = now() WHERE email = 'ada@example.com'")
    result = await cli("key", "create", "--workspace", "acme", "--user", "ada@example.com")
    assert result.exit_code == 1 and "deactivated" in result.output


async def test_key_list_shows_no_secret(cli: Cli, db: asyncpg.Connection[Any], workspace: Workspace,
                                        other_workspace: Workspace) -> None:
    first = printed_key(await cli("key", "create", "--workspace", "acme", "--name", "laptop"))
    second = printed_key(await cli("key", "create", "--workspace", "acme", "--user", "ada@example.com", "--role",
                                   "reports_viewer", "--expires", "2999-01-01"))
    result = await cli("key", "list", "--workspace", "acme")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "PREFIX", "USER", "NAME", "CREATED", "EXPIRES", "STATUS"]
    assert len(lines) == 4  # the fixture's key, and the two made here; none of the other workspace
    for secret in (first, second, workspace.key, other_workspace.key):
        assert secret not in result.output and secret.split("_", 2)[2] not in result.output
    for secret in (first, second):
        row = await key_row(db, secret)
        [line] = [line for line in lines if line.split()[0] == str(row["id"])]
        assert row["prefix"] in line and line.rstrip().endswith("active")
    assert "laptop" in result.stdout and "2999-01-01 00:00:00Z" in result.stdout
    assert "Ada" not in result.stdout and "ada@example.com" in result.stdout  # a made person is named by email

    row = await key_row(db, second)
    result = await cli("key", "list", "--workspace", "acme", "--user", "ada@example.com")
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [str(row["id"])]
    result = await cli("key", "revoke", "--workspace", "acme", str(row["id"]))
    assert result.exit_code == 0 and f"key {row['id']} revoked" in result.stdout
    result = await cli("key", "list", "--workspace", "acme", "--user", "ada@example.com")
    assert result.stdout.splitlines()[1].rstrip().endswith("revoked")


async def test_users(cli: Cli, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    result = await cli("user", "create", "--workspace", "acme", "--name", "Ada", "--email", "ada@example.com",
                       "--role", "project_lead")
    assert result.exit_code == 0 and "person" in result.stdout and "project_lead" in result.stdout, result.output
    result = await cli("user", "create", "--workspace", "acme", "--name", "etl", "--service", "--role",
                       "reports_viewer")
    assert result.exit_code == 0, result.output
    rows = await db.fetch("SELECT kind, name, email, account_role FROM users WHERE workspace_id = $1 ORDER BY id",
                          workspace.id)
    assert [tuple(r) for r in rows] == [("service", "owner", None, "account_admin"),
                                       ("person", "Ada", "ada@example.com", "project_lead"),
                                       ("service", "etl", None, "reports_viewer")]

    for args, code, message in (
            (["--name", "Ada", "--email", "ADA@example.com", "--role", "project_lead"], 1, "exists already"),
            (["--name", "etl", "--service", "--role", "project_lead"], 1, "exists already"),
            (["--name", "Bob", "--role", "project_lead"], 1, "email"),
            (["--name", "Bob", "--email", "bob", "--role", "project_lead"], 1, "email"),
            (["--name", "Bob", "--email", "bob@example.com", "--role", "root"], 2, "reports_viewer_with_cost"),
            (["--name", "Bob", "--email", "bob@example.com"], 2, "--role")):
        result = await cli("user", "create", "--workspace", "acme", *args)
        assert result.exit_code == code and message in result.output, (args, result.output)
    assert await db.fetchval("SELECT count(*) FROM users") == 3

    result = await cli("user", "grant", "--workspace", "acme", "ada@example.com", "42", "financial")
    assert result.exit_code == 0 and "financial on project 42" in result.stdout, result.output
    result = await cli("user", "grant", "--workspace", "acme", "etl", "5F0C6D1E-3B7A-4C1E-9D2A-0B6F7E8D9C01",
                       "time_logging")
    assert result.exit_code == 0, result.output
    result = await cli("user", "grant", "--workspace", "acme", "ada@example.com", "42", "project_admin")
    assert result.exit_code == 0 and "changed to project_admin" in result.stdout, result.output
    rows = await db.fetch("SELECT u.name, m.project, m.permission FROM project_memberships m "
                          "JOIN users u ON u.id = m.user_id ORDER BY 1")
    assert [tuple(r) for r in rows] == [("Ada", "42", "project_admin"),
                                       ("etl", "5f0c6d1e-3b7a-4c1e-9d2a-0b6f7e8d9c01", "time_logging")]
    for args, code, message in ((["ada@example.com", "42", "owner"], 2, "project_collaboration"),
                                (["ada@example.com", "marketing", "financial"], 1, "not a project"),
                                (["nobody@example.com", "42", "financial"], 1, "no user"),
                                (["999999", "42", "financial"], 1, "no user")):
        result = await cli("user", "grant", "--workspace", "acme", *args)
        assert result.exit_code == code and message in result.output, (args, result.output)

    printed_key(await cli("key", "create", "--workspace", "acme", "--user", "ada@example.com"))
    result = await cli("user", "list", "--workspace", "acme")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "NAME", "EMAIL", "ROLE", "STATUS", "KEYS"]
    assert [line.split()[1:3] for line in lines[1:]] == [["service", "owner"], ["person", "Ada"], ["service", "etl"]]
    assert lines[2].split()[-2:] == ["active", "1"] and "project_lead" in lines[2]

    for command in (["key", "--help"], ["key", "create", "--help"], ["key", "list", "--help"],
                    ["key", "revoke", "--help"], ["user", "--help"], ["user", "create", "--help"],
                    ["user", "list", "--help"], ["user", "grant", "--help"]):
        result = await cli(*command)
        assert result.exit_code == 0 and ("--workspace" in result.output or "Commands" in result.output), command


async def revoked_by_the_cli(cli: Cli, stack: Stack, db: asyncpg.Connection[Any],
                             workspace: Workspace) -> tuple[Workspace, int, dict[str, Any]]:
    """A key made and revoked through the command line after it wrote once through the gateway (which still has
    it cached): (the key, its id, a field it wrote to)."""
    field = await stack.create_field(workspace, name="Budget", subject_type="Workspace", value_type="number")
    secret = printed_key(await cli("key", "create", "--workspace", "acme", "--name", "to revoke"))
    victim = Workspace(workspace.id, workspace.slug, secret)
    status, body, _ = await write(stack, victim, item(field, 5, subject_id=1))
    assert status == 200, body
    status, _, _ = await stack.request("GET", FIELDS, victim)  # the gateway has it cached now
    assert status == 200
    key_id: int = (await key_row(db, secret))["id"]
    result = await cli("key", "revoke", "--workspace", "acme", str(key_id))
    assert result.exit_code == 0 and f"key {key_id} revoked" in result.stdout, result.output
    return victim, key_id, field


async def stored_value(db: asyncpg.Connection[Any], field: dict[str, Any]) -> Any:
    return await db.fetchval("SELECT value FROM current_values WHERE custom_field_id = $1", int(field["id"]))


async def test_key_revoke_then_401(cli: Cli, stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace,
                                   other_workspace: Workspace) -> None:
    victim, key_id, field = await revoked_by_the_cli(cli, stack, db, workspace)

    # The command line cannot clear the gateway's cache of principals (5 s): within it, the key fails.
    async def refused() -> bool:
        status, _, _ = await stack.request("GET", FIELDS, victim)
        return status == 401

    await wait_for(refused, timeout=10, what="the gateway to refuse the revoked key")
    status, body, _ = await stack.request("GET", FIELDS, victim)
    assert status == 401 and assert_errors_shape(body)[0]["type"] == "authentication", body
    status, body, _ = await write(stack, victim, item(field, 7, subject_id=1))
    assert status == 401, body
    assert await stored_value(db, field) == 5
    status, body, _ = await stack.request("GET", FIELDS, workspace)  # other keys go on working
    assert status == 200

    result = await cli("key", "revoke", "--workspace", "acme", str(key_id))
    assert result.exit_code == 0 and "already revoked" in result.stdout
    their_key = await db.fetchval("SELECT id FROM api_keys WHERE workspace_id = $1", other_workspace.id)
    for wrong in (str(their_key), "999999"):
        result = await cli("key", "revoke", "--workspace", "acme", wrong)
        assert result.exit_code == 1 and f"no key {wrong}" in result.output
    for wrong in ("0", "abc"):
        result = await cli("key", "revoke", "--workspace", "acme", wrong)
        assert result.exit_code == 2
    assert await db.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", their_key) is None
    status, _, _ = await stack.request("GET", FIELDS, other_workspace)
    assert status == 200


async def test_a_write_after_a_cli_revoke_is_refused_at_once(cli: Cli, stack: Stack, db: asyncpg.Connection[Any],
                                                            workspace: Workspace) -> None:
    """The revocation took the workspace's lock, so the worker, which re-reads keys under it, refuses the very
    next write even while the gateway (which did not see the revocation) still accepts the key: the client
    hears 401 at once, or, asking not to wait, finds its operation failed with 401."""
    victim, _, field = await revoked_by_the_cli(cli, stack, db, workspace)
    status, body, _ = await write(stack, victim, item(field, 6, subject_id=1))
    assert status == 401, body
    assert assert_errors_shape(body)[0]["type"] in ("unauthenticated", "authentication")

    status, body, _ = await write(stack, victim, item(field, 6, subject_id=1), headers={"Prefer": "respond-async"})
    if status == 202:  # the gateway still had the key cached: the worker decides
        location = body["operation"]["location"]

        async def settled() -> bool:
            _, operation, _ = await stack.request("GET", location, workspace)
            return bool(operation["status"] != "pending")

        await wait_for(settled, timeout=10, what="the refused write's operation to settle")
        _, operation, _ = await stack.request("GET", location, workspace)
        assert operation["status"] == "failed" and operation["http_status"] == 401, operation
    else:
        assert status == 401, body
    assert await stored_value(db, field) == 5
