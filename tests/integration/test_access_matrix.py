"""Roles and access against the real stack (issue 5): who may write, delete and read which values, over HTTP
and straight over the queue, on both faces; registering subjects to projects; role and membership changes;
managing definitions. And the SQL twin of the rules (``cfv_allowed``, used by reads) against the Python rules
(used by the worker for writes), over the whole matrix.

Each test builds one workspace and loops over its cases, collecting every mismatch, so a failure lists them all.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest
from cfv.domain.access import (
    ACCOUNT_ADMIN,
    ACCOUNT_ROLES,
    PROJECT_ADMIN,
    PROJECT_PERMISSIONS,
    Grants,
    allowed,
    subject_project,
)
from cfv.domain.fields import SubjectType
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from cfv.store.database import create_pool
from cfv.store.queries import query
from support import Stack, Workspace, add_users
from support.kantata import FIELDS, VALUES, assert_errors_shape, item, write
from support.pipeline import broker_channel, command, envelope, publish_raw
from support.plane import a_uuid, new_project

P1, P2, P3 = "1001", "1002", "1003"  # projects: Kantata Workspace ids
LOWEST_ACCOUNT, LOWEST_PROJECT = ACCOUNT_ROLES[0], PROJECT_PERMISSIONS[0]
NON_ADMIN_TOP = "reports_viewer_with_cost"


def account_rank(level: str) -> int:
    return ACCOUNT_ROLES.index(level) + 1


def project_rank(level: str | None) -> int:
    return 0 if level is None else PROJECT_PERMISSIONS.index(level) + 1


# --- principals ----------------------------------------------------------------------------------------------


@dataclass
class User:
    """A user of the workspace with one key, as a ``Workspace`` the stack's requests authenticate with."""

    name: str
    id: int
    role: str
    projects: dict[str, str]
    as_client: Workspace

    @property
    def key(self) -> str:
        return self.as_client.key

    @property
    def grants(self) -> Grants:
        return Grants(self.role, dict(self.projects))


async def make_user(db: asyncpg.Connection[Any], workspace: Workspace, name: str, role: str,
                    projects: dict[str, str] | None = None) -> User:
    """A person with ``role``, the given project memberships and a key."""
    row = await db.fetchrow(query("create_user"), workspace.id, "person", name,
                            f"{name}-{uuid.uuid4().hex[:6]}@example.com", role)
    assert row is not None
    user_id = row["id"]
    for project, permission in (projects or {}).items():
        await db.fetchrow(query("set_membership"), workspace.id, user_id, project, permission)
    secret = (await issue_key(db, workspace.id, user_id=user_id)).secret
    return User(name, user_id, role, dict(projects or {}), Workspace(workspace.id, workspace.slug, secret))


# --- the queue -----------------------------------------------------------------------------------------------


class QueueClient:
    """Publishes signed command messages as an integration would, and collects their replies."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue) -> None:
        self._channel = channel
        self._queue = queue
        self._waiting: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self._waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(orjson.loads(message.body))

    async def send(self, api_key: str, workspace_id: int, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Publish ``commands`` in one message signed with ``api_key``; return the outcomes replied."""
        correlation = uuid.uuid4().hex
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        await publish_raw(self._channel, api_key, envelope(*commands), str(workspace_id),
                          message_id=uuid.uuid4().hex, reply_to=self._queue.name, correlation_id=correlation,
                          user_id="guest")
        return await asyncio.wait_for(future, 20)

    async def write(self, user: User, field_id: int, subject_type: str, subject_id: int, value: Any,
                    op: str = "write") -> dict[str, Any]:
        """One item, one command; its outcome."""
        body = command(user.as_client.id, field_id, subject_id, value, subject_type=subject_type)
        if op == "delete":
            body["items"][0] = {k: v for k, v in body["items"][0].items() if k != "value"} | {"op": "delete"}
        [outcome] = await self.send(user.key, user.as_client.id, body)
        return outcome


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[QueueClient]:
    """A queue client with an exclusive reply queue on this test's virtual host."""
    async with broker_channel(settings) as channel:
        # The worker replies only to a queue of the publishing user (user_id, checked by RabbitMQ): guest's.
        replies = await channel.declare_queue(f"guest.replies.{uuid.uuid4().hex}", exclusive=True)
        client = QueueClient(channel, replies)
        await replies.consume(client._on_reply, no_ack=True)
        yield client


def register_command(workspace_id: int, placements: Iterable[tuple[str, int | str, str]]) -> dict[str, Any]:
    return {"type": "register_subjects", "id": str(uuid.uuid4()), "workspace_id": workspace_id,
            "accepted_at": "2030-01-01T00:00:00+00:00",
            "subjects": [{"subject_type": t, "subject_id": s, "project": p} for t, s, p in placements]}


# --- decisions -----------------------------------------------------------------------------------------------


def http_decision(status: int, body: Any) -> str:
    """allowed / forbidden / not_found, or the unexpected answer as text."""
    if status in (200, 201, 204):
        return "allowed"
    if status == 403 and {e["type"] for e in assert_errors_shape(body)} == {"forbidden"}:
        return "forbidden"
    if status == 404:
        return "not_found"
    return f"HTTP {status} {body}"


def plane_decision(status: int, body: Any) -> str:
    """The same, of the Plane face (whose errors are ``{"error": message}``)."""
    if status in (200, 201, 204):
        return "allowed"
    if status == 403 and "_access requires" in str(body):
        return "forbidden"
    return f"HTTP {status} {body}"


def queue_decision(outcome: dict[str, Any]) -> str:
    if outcome["status"] == "succeeded":
        return "allowed"
    if outcome["status"] == "failed" and {e["type"] for e in outcome["errors"]} == {"forbidden"}:
        return "forbidden"
    return f"queue {outcome}"


def verdict(ok: bool) -> str:
    return "allowed" if ok else "forbidden"


async def current(db: asyncpg.Connection[Any] | asyncpg.Pool[Any], workspace: Workspace, subject_type: str,
                  subject_id: int | str, field_id: int) -> tuple[int, Any, int] | None:
    """(value id, value, seq) of the current value, or None when there is none."""
    row = await db.fetchrow("SELECT value_id, value, seq FROM current_values WHERE workspace_id = $1 AND "
                            "subject_type = $2 AND subject_id = $3 AND custom_field_id = $4",
                            workspace.id, subject_type, str(subject_id), field_id)
    if row is None or row["value_id"] is None:
        return None
    return row["value_id"], row["value"], row["seq"]


async def seed(stack: Stack, admin: Workspace, items: list[dict[str, Any]]) -> None:
    """Write ``items`` as an administrator, 100 at a time."""
    for start in range(0, len(items), 100):
        status, body, _ = await write(stack, admin, *items[start:start + 100], bulk=True)
        assert status == 200, body


async def register(stack: Stack, who: Workspace, placements: Iterable[tuple[str, int | str, str]]
                   ) -> tuple[int, Any]:
    """PUT /api/v1/subject_projects."""
    status, body, _ = await stack.request("PUT", "/api/v1/subject_projects", who, json={"subject_projects": [
        {"subject_type": t, "subject_id": s, "project": p} for t, s, p in placements]})
    return status, body


async def can_read(stack: Stack, who: Workspace, subject_type: str, subject_id: int | str, field_id: int,
                   value_id: int) -> dict[str, bool | str]:
    """What each Kantata read shows ``who`` of one value: listed, got by id, its history."""
    status, body, _ = await stack.request(
        "GET", f"{VALUES}?subject_type={subject_type}&with_subject_id={subject_id}&with_custom_field_id={field_id}",
        who)
    assert status == 200, body
    listed = [r["id"] for r in body["results"]]
    status, by_id, _ = await stack.request("GET", f"{VALUES}/{value_id}", who)
    status_history, history, _ = await stack.request(
        "GET", f"{VALUES}/history?subject_type={subject_type}&subject_id={subject_id}&custom_field_id={field_id}",
        who)
    assert status_history == 200, history
    got: bool | str = status == 200 if status in (200, 404) else f"HTTP {status} {by_id}"
    return {"list": listed == [str(value_id)] if listed else False, "get": got,
            "history": bool(history["results"])}


# --- the SQL twin ----------------------------------------------------------------------------------------------


async def test_access_levels_table_is_the_python_ladders(db: asyncpg.Connection[Any]) -> None:
    rows = {(r["name"], r["scope"], r["rank"]) for r in await db.fetch("SELECT name, scope, rank FROM access_levels")}
    expected = {(name, "account", rank) for rank, name in enumerate(ACCOUNT_ROLES, 1)}
    expected |= {(name, "project", rank) for rank, name in enumerate(PROJECT_PERMISSIONS, 1)}
    assert rows == expected


async def test_sql_cfv_allowed_agrees_with_python_allowed(db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    """Every role x every membership of the subject's project (and none) x every subject type and placement x every
    level (and an unknown one): the read side's ``cfv_allowed`` and the worker's ``allowed`` (with
    ``subject_project``) agree, given the reader's memberships and the subject's registered project as the read
    queries gather them (from project_memberships and subject_projects) and as Python holds them; and the project
    ``cfv_allowed`` takes each subject to be in is the one ``subject_project`` names."""
    plane_a, plane_b = str(uuid.uuid4()), str(uuid.uuid4())
    users: list[tuple[int, Grants]] = []
    for n, (role, permission) in enumerate(itertools.product(ACCOUNT_ROLES, (None, *PROJECT_PERMISSIONS))):
        # the permission on P1 and plane_a; project_admin on P3 (which no subject below is in)
        projects = {P3: PROJECT_ADMIN} | ({P1: permission, plane_a: permission} if permission else {})
        row = await db.fetchrow(query("create_user"), workspace.id, "person", f"u{n}", f"u{n}@example.com", role)
        assert row is not None
        for project, perm in projects.items():
            await db.fetchrow(query("set_membership"), workspace.id, row["id"], project, perm)
        users.append((row["id"], Grants(role, projects)))
    registrations = {("Story", "1"): P1, ("Story", "2"): P2, ("Resource", "1"): P1, ("Resource", "2"): P2,
                     ("WorkItem", "9f0e1c2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f"): P1}
    for (subject_type, subject_id), project in registrations.items():
        await db.execute("INSERT INTO subject_projects (workspace_id, subject_type, subject_id, project) "
                         "VALUES ($1, $2, $3, $4)", workspace.id, subject_type, subject_id, project)
    work_item = "5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e10"
    subjects: list[tuple[str, str, str | None]] = [  # (type, id, the field's project)
        ("Estimate", "1", None), ("WorkspaceGroup", "1", None), ("User", "1", None),
        ("Workspace", P1, None), ("Workspace", P2, None), ("Workspace", P3, None),
        ("Story", "1", None), ("Story", "2", None), ("Story", "3", None),  # in P1, in P2, unregistered
        ("Resource", "1", None), ("Resource", "2", None), ("Resource", "3", None),
        ("WorkItem", work_item, plane_a), ("WorkItem", work_item, plane_b),
        ("WorkItem", "9f0e1c2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f", None), ("WorkItem", work_item, None),
        ("WorkItem", "9f0e1c2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f", plane_b),  # registered in P1: the property's wins
    ]
    levels = (*ACCOUNT_ROLES, *PROJECT_PERMISSIONS, "bogus")
    cases = [(user_id, grants, level, subject) for (user_id, grants), level, subject
             in itertools.product(users, levels, subjects)]
    registered = [registrations.get((c[3][0], c[3][1])) for c in cases]
    columns = ([c[0] for c in cases], [c[1].account_role for c in cases], [c[2] for c in cases],
               [c[3][0] for c in cases], [c[3][1] for c in cases], [c[3][2] for c in cases])
    # As the read queries call it: the reader's memberships aggregated from project_memberships, the subject's
    # registered project joined from subject_projects.
    as_read = await db.fetch(
        "SELECT t.n, cfv_allowed(t.r, (SELECT coalesce(jsonb_object_agg(m.project, m.permission), '{}'::jsonb) "
        "                              FROM project_memberships m WHERE m.workspace_id = $1 AND m.user_id = t.u), "
        "                   t.l, t.st, t.sid, t.fp, sp.project) AS ok "
        "FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::uuid[]) "
        "WITH ORDINALITY AS t (u, r, l, st, sid, fp, n) "
        "LEFT JOIN subject_projects sp ON (sp.workspace_id, sp.subject_type, sp.subject_id) = ($1, t.st, t.sid) "
        "ORDER BY t.n", workspace.id, *columns)
    # And fed what Python holds: the grants' memberships and the registrations.
    as_given = await db.fetch(
        "SELECT t.n, cfv_allowed(t.r, t.m::jsonb, t.l, t.st, t.sid, t.fp, t.reg) AS ok "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::text[]) "
        "WITH ORDINALITY AS t (r, m, l, st, sid, fp, reg, n) ORDER BY t.n",
        columns[1], [orjson.dumps(c[1].projects).decode() for c in cases], *columns[2:], registered)
    assert len(as_read) == len(as_given) == len(cases) == 30 * 11 * 17
    mismatches = []
    for (user_id, grants, level, (subject_type, subject_id, field_project)), registration, read, given in zip(
            cases, registered, as_read, as_given, strict=True):
        project = subject_project(SubjectType(subject_type), subject_id, field_project, registration)
        python = allowed(grants, level, SubjectType(subject_type), project)
        if read["ok"] is not python or given["ok"] is not python:
            mismatches.append(f"user {user_id} {grants} level {level} on {subject_type} {subject_id} "
                              f"(field project {field_project}, registered in {registration}): SQL {read['ok']} "
                              f"as read, {given['ok']} as given, Python {python}")
    assert not mismatches, f"{len(mismatches)} of {len(cases)} disagree:\n" + "\n".join(mismatches[:50])
    # A spot check through fetchval, with the memberships as a jsonb parameter.
    admin_grants = users[-1][1]  # account_admin (with project_admin on P1)
    assert admin_grants.account_role == ACCOUNT_ADMIN
    assert await db.fetchval("SELECT cfv_allowed($1,$2,$3,$4,$5,$6,$7)", admin_grants.account_role, {}, ACCOUNT_ADMIN,
                             "Story", "3", None, None) is True
    some_grants = users[5 + 4][1]  # project_creator with project_admin on P1
    assert some_grants.projects.get(P1) == PROJECT_ADMIN and some_grants.account_role == "project_creator"
    assert await db.fetchval("SELECT cfv_allowed($1,$2,$3,$4,$5,$6,$7)", some_grants.account_role,
                             some_grants.projects, "financial", "Story", "1", None, P1) is True
    assert await db.fetchval("SELECT cfv_allowed($1,$2,$3,$4,$5,$6,$7)", some_grants.account_role,
                             some_grants.projects, "financial", "Story", "3", None, None) is False

    # The project each subject is in, as cfv_allowed sees it: a membership on one candidate project at a time
    # reaches the lowest project level exactly when the candidate is the subject's project (never, for an
    # account subject or a subject in no project).
    candidates = sorted({s[1] for s in subjects} | {s[2] for s in subjects if s[2]} | set(registrations.values()))
    probes = list(itertools.product(subjects, candidates))
    seen = await db.fetch(
        "SELECT t.n, cfv_allowed($1, jsonb_build_object(t.c, $2::text), $2, t.st, t.sid, t.fp, sp.project) AS ok "
        "FROM unnest($3::text[], $4::text[], $5::uuid[], $6::text[]) WITH ORDINALITY AS t (st, sid, fp, c, n) "
        "LEFT JOIN subject_projects sp ON (sp.workspace_id, sp.subject_type, sp.subject_id) = ($7, t.st, t.sid) "
        "ORDER BY t.n", LOWEST_ACCOUNT, LOWEST_PROJECT, [s[0] for (s, _) in probes], [s[1] for (s, _) in probes],
        [s[2] for (s, _) in probes], [c for (_, c) in probes], workspace.id)
    in_sql = {subject: {c for ((s, c), row) in zip(probes, seen, strict=True) if s == subject and row["ok"]}
              for subject in subjects}
    assert in_sql == {
        (t, i, fp): {p} - {None} for t, i, fp in subjects
        for p in [subject_project(SubjectType(t), i, fp, registrations.get((t, i)))]}


async def test_the_reads_inline_cfv_allowed(db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    """cfv_allowed is one expression that Postgres inlines into every read (a function it cannot inline, as one
    with a sub-select, runs once per row: seconds for a listing of 50,000 values): no plan calls it. And an
    administrator's reads look up neither memberships nor placements: their filter is simply true."""
    reader = await make_user(db, workspace, "reader", NON_ADMIN_TOP, {P1: PROJECT_ADMIN})
    admin = await make_user(db, workspace, "admin", ACCOUNT_ADMIN)
    project = uuid.uuid4()
    as_of = await db.fetchval("SELECT now()")
    listing = (workspace.id, "Story", None, None, None, None, "updated_at", False, 20, 0)
    reads: dict[str, Any] = {  # name -> (arguments before the reader, after it)
        "list_values": (listing, ()),
        "list_values_as_of": ((*listing, as_of), ()),
        "values_by_ids": ((workspace.id, [1, 2]), ()),
        "value_history": ((workspace.id, "Story", "1", 1), ()),
        "work_item_values": ((workspace.id, str(uuid.uuid4()), None, project), ()),
        "readable_values": ((workspace.id,), (["Story"], ["1"], [1])),
    }
    problems = []
    for name, (before, after) in reads.items():
        for user in (reader, admin):
            plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN (VERBOSE, COSTS OFF) {query(name)}",
                                                          *before, user.id, user.role, *after))
            if "cfv_allowed" in plan:
                problems.append(f"{name} calls cfv_allowed for {user.role}:\n{plan}")
            if user is reader and "array_position" not in plan:
                problems.append(f"{name} does not filter for {user.role}:\n{plan}")
            if user is admin and ("project_memberships" in plan or "subject_projects" in plan
                                  or "array_position" in plan):
                problems.append(f"{name} looks up memberships or placements for an administrator:\n{plan}")
    assert not problems, "\n\n".join(problems)


# --- the write / delete / read matrix over HTTP and the queue ------------------------------------------------


@dataclass
class Matrix:
    """One workspace's fields, subjects and users, and the mismatches found so far."""

    stack: Stack
    db: asyncpg.Pool[Any]  # the cases run concurrently (one task per field)
    workspace: Workspace
    queue: QueueClient
    mismatches: list[str] = field(default_factory=list)
    cases: int = 0
    decisions: dict[str, int] = field(default_factory=dict)

    def check(self, what: str, got: Any, expected: Any) -> None:
        if got != expected:
            self.mismatches.append(f"{what}: got {got!r}, expected {expected!r}")

    async def writes(self, user: User, subject_type: str, subject_id: int | str, the_field: dict[str, Any],
                     may_write: bool, may_read: bool, n: int) -> None:
        """A write over HTTP, the same over the queue, a delete over the queue and one over HTTP, by ``user``,
        of a value an administrator wrote; each checked against the expectation and the stored value."""
        self.cases += 1
        field_id = int(the_field["id"])
        label = (f"{user.name} ({user.role}, {user.projects}) on {subject_type} {subject_id}, field "
                 f"write_access={the_field['write_access']} read_access={the_field['read_access']}")
        expected = verdict(may_write)
        self.decisions[expected] = self.decisions.get(expected, 0) + 1

        async def reseed() -> tuple[int, Any, int]:
            before = await current(self.db, self.workspace, subject_type, subject_id, field_id)
            if before is None or before[1] != -1:
                await seed(self.stack, self.workspace, [item(the_field, -1, subject_id, subject_type)])
                before = await current(self.db, self.workspace, subject_type, subject_id, field_id)
            assert before is not None
            return before

        async def stored_after(how: str, decision: str, before: tuple[int, Any, int], value: Any) -> None:
            after = await current(self.db, self.workspace, subject_type, subject_id, field_id)
            if decision == "allowed":
                self.check(f"{how} {label}: stored value", None if after is None else after[1], value)
            else:
                self.check(f"{how} {label}: refused, so unchanged", after, before)

        before = await reseed()
        status, body, _ = await write(self.stack, user.as_client, item(the_field, 1000 + n, subject_id, subject_type))
        by_http = http_decision(status, body)
        self.check(f"HTTP write {label}", by_http, expected)
        if by_http == "forbidden":
            message = body["errors"][0]["message"]
            self.check(f"HTTP write {label}: message", the_field["write_access"] in message, True)
        await stored_after("HTTP write", by_http, before, 1000 + n)

        before = await reseed()
        by_queue = queue_decision(await self.queue.write(user, field_id, subject_type, subject_id, 2000 + n))
        self.check(f"queue write {label}", by_queue, expected)
        self.check(f"HTTP vs queue write {label}", by_queue, by_http)
        await stored_after("queue write", by_queue, before, 2000 + n)

        before = await reseed()
        by_queue = queue_decision(await self.queue.write(user, field_id, subject_type, subject_id, None, "delete"))
        self.check(f"queue delete {label}", by_queue, expected)
        await stored_after("queue delete", by_queue, before, None)

        before = await reseed()
        status, body, _ = await self.stack.request("DELETE", f"{VALUES}/{before[0]}", user.as_client)
        # An id names a value only to who may read it; a readable one is deleted as its write_access says.
        self.check(f"HTTP delete {label}", http_decision(status, body),
                   expected if may_read else "not_found")
        await stored_after("HTTP delete", http_decision(status, body), before, None)

    async def reads(self, user: User, subject_type: str, subject_id: int | str, the_field: dict[str, Any],
                    may_read: bool) -> None:
        """List, get by id and history of a value an administrator wrote, as ``user``."""
        self.cases += 1
        field_id = int(the_field["id"])
        stored = await current(self.db, self.workspace, subject_type, subject_id, field_id)
        assert stored is not None
        seen = await can_read(self.stack, user.as_client, subject_type, subject_id, field_id, stored[0])
        self.check(f"reads of {user.name} ({user.role}, {user.projects}) on {subject_type} {subject_id}, field "
                   f"read_access={the_field['read_access']}", seen,
                   {"list": may_read, "get": may_read, "history": may_read})

    def assert_clean(self) -> None:
        assert not self.mismatches, (f"{len(self.mismatches)} mismatches in {self.cases} cases:\n"
                                     + "\n".join(self.mismatches[:80]))


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """Connections for checks made by concurrent cases."""
    readers = await create_pool(settings.database_url, size=16)
    yield readers
    await readers.close()


async def test_account_subjects_matrix(stack: Stack, db: asyncpg.Connection[Any], pool: asyncpg.Pool[Any],
                                       workspace: Workspace, queue: QueueClient) -> None:
    """Estimate and User values: every account role x every write_access (writes, deletes, over HTTP and the
    queue) and x every read_access (list, get, history). Memberships do not count on account subjects."""
    m = Matrix(stack, pool, workspace, queue)
    users = [await make_user(db, workspace, f"role-{role}", role, {P1: PROJECT_ADMIN}) for role in ACCOUNT_ROLES]
    subject_types = ("Estimate", "User")
    write_fields = {(t, level): await stack.create_field(
        workspace, name=f"{t} w {level}", subject_type=t, value_type="number", write_access=level,
        read_access=LOWEST_ACCOUNT) for t in subject_types for level in ACCOUNT_ROLES}
    read_fields = {(t, level): await stack.create_field(
        workspace, name=f"{t} r {level}", subject_type=t, value_type="number", write_access=ACCOUNT_ADMIN,
        read_access=level) for t in subject_types for level in ACCOUNT_ROLES}
    for f in write_fields.values():
        assert f["read_access"] == LOWEST_ACCOUNT, f
    await seed(stack, workspace, [item(f, 7, 500, t) for (t, _), f in read_fields.items()])

    n = itertools.count()

    async def cases_of(subject_type: str, level: str, the_field: dict[str, Any]) -> None:
        for user_index, user in enumerate(users):
            subject_id = 100 + user_index * 10 + ACCOUNT_ROLES.index(level)
            may = account_rank(user.role) >= account_rank(level)
            await m.writes(user, subject_type, subject_id, the_field, may, True, next(n))

    await asyncio.gather(*(cases_of(t, level, f) for (t, level), f in write_fields.items()))
    await asyncio.gather(*(m.reads(user, subject_type, 500, the_field, account_rank(user.role) >= account_rank(level))
                           for user, ((subject_type, level), the_field) in itertools.product(users,
                                                                                             read_fields.items())))
    m.assert_clean()
    assert m.decisions == {"allowed": 2 * 21, "forbidden": 2 * 15}, m.decisions


async def test_project_subjects_matrix(stack: Stack, db: asyncpg.Connection[Any], pool: asyncpg.Pool[Any],
                                       workspace: Workspace, queue: QueueClient) -> None:
    """A Story registered to P1 and the Workspace subject P1: every project permission on P1 (and none; each user
    also administers P2, and holds the highest non-admin account role) x every project write_access and
    account_admin (writes, deletes, over HTTP and the queue) and x every read_access (list, get, history)."""
    m = Matrix(stack, pool, workspace, queue)
    users = [await make_user(db, workspace, f"perm-{p}", NON_ADMIN_TOP, {P2: PROJECT_ADMIN} | ({P1: p} if p else {}))
             for p in (None, *PROJECT_PERMISSIONS)]
    users.append(await make_user(db, workspace, "admin-person", ACCOUNT_ADMIN))
    levels = (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN)
    # Each user's Story (one per field), and one for the reads, registered to P1 by an administrator.
    stories = {(u.name, level): 3000 + i * 10 + j for i, u in enumerate(users) for j, level in enumerate(levels)}
    status, body = await register(stack, workspace, [("Story", s, P1) for s in [*stories.values(), 3999]])
    assert status == 200, body
    assert await db.fetchval("SELECT count(*) FROM subject_projects WHERE project = $1", P1) == len(stories) + 1

    subjects = ("Story", "Workspace")
    write_fields = {(t, level): await stack.create_field(
        workspace, name=f"{t} w {level}", subject_type=t, value_type="number", write_access=level,
        read_access=LOWEST_PROJECT) for t in subjects for level in levels}
    read_fields = {(t, level): await stack.create_field(
        workspace, name=f"{t} r {level}", subject_type=t, value_type="number", write_access=ACCOUNT_ADMIN,
        read_access=level) for t in subjects for level in levels}
    read_subject = {"Story": 3999, "Workspace": int(P1)}
    await seed(stack, workspace, [item(f, 7, read_subject[t], t) for (t, _), f in read_fields.items()])

    def may(user: User, level: str) -> bool:
        if user.role == ACCOUNT_ADMIN:
            return True
        return level != ACCOUNT_ADMIN and project_rank(user.projects.get(P1)) >= project_rank(level)

    n = itertools.count()

    async def cases_of(subject_type: str, level: str, the_field: dict[str, Any]) -> None:
        # one field at a time: every user's cases of a Workspace field write the same value (of P1)
        for user in users:
            subject_id = stories[(user.name, level)] if subject_type == "Story" else int(P1)
            may_read = user.role == ACCOUNT_ADMIN or P1 in user.projects
            await m.writes(user, subject_type, subject_id, the_field, may(user, level), may_read, next(n))

    await asyncio.gather(*(cases_of(t, level, f) for (t, level), f in write_fields.items()))
    await asyncio.gather(*(m.reads(user, subject_type, read_subject[subject_type], the_field, may(user, level))
                           for user, ((subject_type, level), the_field) in itertools.product(users,
                                                                                             read_fields.items())))
    m.assert_clean()
    # none: 0, pc: 1, tl: 2, fin: 3, pa: 4 of the 5 levels; the administrator all 5; on two subject types
    assert m.decisions == {"allowed": 2 * 15, "forbidden": 2 * 15}, m.decisions


# --- the Plane face ------------------------------------------------------------------------------------------


async def test_plane_work_item_values_follow_the_property_s_project(stack: Stack, db: asyncpg.Connection[Any],
                                                                    workspace: Workspace) -> None:
    """A work item's values belong to its property's project: project_admin there writes (the default
    write_access), any member reads (the default read_access); no membership, or one of another project, sees
    nothing (404, or [] for a multi property) and writes nothing (403)."""
    plane = await new_project(stack, workspace, "ACC")
    other = await new_project(stack, workspace, "OTH")
    project, other_project = plane.project_id, other.project_id
    text = await plane.create_property(property_type="TEXT")
    multi = await plane.create_property(property_type="RELATION", relation_type="USER", is_multi=True)
    text_id = await db.fetchval("SELECT id FROM custom_fields WHERE uuid = $1", uuid.UUID(text["id"]))
    seeded, written = a_uuid(), a_uuid()  # the users the relation names: users of the workspace
    await add_users(db, workspace.id, uuids=[seeded, written])
    users = {
        "owner": (workspace, True, True),
        "admin": ((await make_user(db, workspace, "p-admin", ACCOUNT_ADMIN)).as_client, True, True),
        "project_admin": ((await make_user(db, workspace, "p-pa", LOWEST_ACCOUNT, {project: PROJECT_ADMIN}))
                          .as_client, True, True),
        "financial": ((await make_user(db, workspace, "p-fin", NON_ADMIN_TOP, {project: "financial"})).as_client,
                      False, True),
        "collaboration": ((await make_user(db, workspace, "p-pc", LOWEST_ACCOUNT, {project: LOWEST_PROJECT}))
                          .as_client, False, True),
        "none": ((await make_user(db, workspace, "p-none", NON_ADMIN_TOP)).as_client, False, False),
        "other project": ((await make_user(db, workspace, "p-other", NON_ADMIN_TOP,
                                           {other_project: PROJECT_ADMIN, P1: PROJECT_ADMIN})).as_client,
                          False, False),
    }
    mismatches: list[str] = []

    def check(what: str, got: Any, expected: Any) -> None:
        if got != expected:
            mismatches.append(f"{what}: got {got!r}, expected {expected!r}")

    for name, (client, may_write, may_read) in users.items():
        work_item = a_uuid()
        # seeded by the workspace owner (an administrator)
        status, body, _ = await plane.write(text, "seed", work_item)
        assert status == 201, body
        status, body, _ = await plane.write(multi, [seeded], work_item)
        assert status == 201, body

        async def as_user(method: str, path: str, json: Any = None, c: Workspace = client) -> tuple[int, Any]:
            status, body, _ = await stack.request(method, path, c, json=json)
            return status, body

        status, body = await as_user("GET", plane.values_path(work_item, text["id"]))
        check(f"{name}: GET text value", status, 200 if may_read else 404)
        status, body = await as_user("GET", plane.values_path(work_item, multi["id"]))
        check(f"{name}: GET multi value", (status, bool(body)), (200, may_read))
        status, body = await as_user("GET", plane.all_values_path(work_item))
        check(f"{name}: GET all values", (status, len(body) if status == 200 else body),
              (200, 2 if may_read else 0))

        for prop, value in ((text, "by user"), (multi, [written])):
            status, body = await as_user("POST", plane.values_path(work_item, prop["id"]), {"value": value})
            check(f"{name}: POST {prop['property_type']} value", plane_decision(status, body), verdict(may_write))
            status, body = await as_user("PATCH", plane.values_path(work_item, prop["id"]), {"value": value})
            check(f"{name}: PATCH {prop['property_type']} value", plane_decision(status, body), verdict(may_write))
        stored = await current(db, workspace, "WorkItem", work_item, text_id)
        check(f"{name}: stored text", stored and stored[1], "by user" if may_write else "seed")
        status, body = await as_user("DELETE", plane.values_path(work_item, text["id"]))
        check(f"{name}: DELETE text value", plane_decision(status, body), verdict(may_write))
        stored = await current(db, workspace, "WorkItem", work_item, text_id)
        check(f"{name}: text after delete", stored and stored[1], None if may_write else "seed")

    # write_access lowered to financial (through the definitions API, which covers work-item properties too)
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{text_id}", workspace,
                                          json={"custom_field": {"write_access": "financial"}})
    assert status == 200, body
    for name, expected in (("financial", True), ("collaboration", False), ("none", False),
                           ("other project", False), ("project_admin", True)):
        client = users[name][0]
        status, body, _ = await plane.stack.request("POST", plane.values_path(a_uuid(), text["id"]), client,
                                                    json={"value": "x"})
        check(f"{name}: POST text with write_access financial", plane_decision(status, body), verdict(expected))
    assert not mismatches, "\n".join(mismatches)


# --- registering subjects ------------------------------------------------------------------------------------


async def test_unregistered_subjects_and_registration(stack: Stack, db: asyncpg.Connection[Any],
                                                      workspace: Workspace, queue: QueueClient) -> None:
    everywhere = await make_user(db, workspace, "everywhere", NON_ADMIN_TOP,
                                 {P1: PROJECT_ADMIN, P2: PROJECT_ADMIN, P3: PROJECT_ADMIN})
    admin_person = await make_user(db, workspace, "admin", ACCOUNT_ADMIN)
    story_field = await stack.create_field(workspace, name="Story points", subject_type="Story",
                                           value_type="number", write_access=LOWEST_PROJECT,
                                           read_access=LOWEST_PROJECT)
    resource_field = await stack.create_field(workspace, name="Resource rate", subject_type="Resource",
                                              value_type="number", write_access=LOWEST_PROJECT,
                                              read_access=LOWEST_PROJECT)
    fid = int(story_field["id"])

    # An unregistered Story: a non-administrator, member of every project, is told to register it.
    for the_field, subject_type in ((story_field, "Story"), (resource_field, "Resource")):
        status, body, _ = await write(stack, everywhere.as_client, item(the_field, 1, 900, subject_type))
        assert status == 403, body
        [error] = assert_errors_shape(body)
        assert error["type"] == "forbidden", error
        assert f"{subject_type} 900 is not registered to a project" in error["message"], error
        assert "register it" in error["message"], error
        outcome = await queue.write(everywhere, int(the_field["id"]), subject_type, 900, 2)
        assert queue_decision(outcome) == "forbidden", outcome
        assert "register it" in outcome["errors"][0]["message"], outcome
        assert await current(db, workspace, subject_type, 900, int(the_field["id"])) is None
    # ... while administrators may.
    for admin in (workspace, admin_person.as_client):
        status, body, _ = await write(stack, admin, item(story_field, 3, 900, "Story"))
        assert status == 200, body
    outcome = await queue.write(admin_person, fid, "Story", 900, 4)
    assert outcome["status"] == "succeeded", outcome
    stored = await current(db, workspace, "Story", 900, fid)
    assert stored is not None and stored[1] == 4
    # ... and only they read it.
    assert await can_read(stack, everywhere.as_client, "Story", 900, fid, stored[0]) == {
        "list": False, "get": False, "history": False}
    assert await can_read(stack, admin_person.as_client, "Story", 900, fid, stored[0]) == {
        "list": True, "get": True, "history": True}

    # Registering takes project_admin on the target project.
    a = await make_user(db, workspace, "a", NON_ADMIN_TOP, {P1: PROJECT_ADMIN, P2: "financial"})
    b = await make_user(db, workspace, "b", LOWEST_ACCOUNT, {P1: PROJECT_ADMIN, P2: PROJECT_ADMIN})
    c = await make_user(db, workspace, "c", NON_ADMIN_TOP, {P1: "financial", P2: "financial"})

    async def placed(subject_id: int, subject_type: str = "Story") -> str | None:
        found: str | None = await db.fetchval(
            "SELECT project FROM subject_projects WHERE workspace_id = $1 AND subject_type = $2 AND subject_id = $3",
            workspace.id, subject_type, str(subject_id))
        return found

    mismatches: list[str] = []

    async def attempt(who: User, placements: list[tuple[str, int, str]], expected: str, what: str) -> None:
        status, body = await register(stack, who.as_client, placements)
        if http_decision(status, body) != expected:
            mismatches.append(f"{what}: HTTP {status} {body}, expected {expected}")

    await attempt(c, [("Story", 901, P1)], "forbidden", "financial on P1 places Story 901 in P1")
    [outcome] = await queue.send(c.key, workspace.id, register_command(workspace.id, [("Story", 901, P1)]))
    if queue_decision(outcome) != "forbidden":
        mismatches.append(f"financial on P1 places Story 901 in P1 over the queue: {outcome}")
    if await placed(901) is not None:
        mismatches.append("Story 901 was placed by a user without project_admin")
    await attempt(a, [("Story", 901, P1)], "allowed", "project_admin on P1 places Story 901 in P1")
    await attempt(a, [("Resource", 901, P1)], "allowed", "project_admin on P1 places Resource 901 in P1")
    await attempt(a, [("Story", 902, P2)], "forbidden", "financial on P2 places Story 902 in P2")
    await attempt(a, [("Story", 901, P2)], "forbidden", "a moves Story 901 from P1 to P2 (financial on P2)")
    await attempt(a, [("Story", 903, P1), ("Story", 904, P2)], "forbidden", "a places 903 in P1 and 904 in P2")
    await attempt(everywhere, [("Story", 905, P1)], "allowed", "project_admin everywhere places Story 905 in P1")
    await attempt(b, [("Story", 905, P3)], "forbidden", "b moves Story 905 from P1 to P3 (no membership)")
    if (await placed(901), await placed(901, "Resource"), await placed(902), await placed(903), await placed(904),
            await placed(905)) != (P1, P1, None, None, None, P1):
        mismatches.append("placements after the refusals: "
                          f"{[await placed(s) for s in (901, 902, 903, 904, 905)]}")

    # Members of P1 write Story 901 now; c (financial on P1) included.
    status, body, _ = await write(stack, c.as_client, item(story_field, 10, 901, "Story"))
    if status != 200:
        mismatches.append(f"c writes Story 901 in P1: {status} {body}")

    # Moving takes project_admin on both projects: b has it.
    await attempt(b, [("Story", 901, P2)], "allowed", "b moves Story 901 from P1 to P2")
    if await placed(901) != P2:
        mismatches.append(f"Story 901 is in {await placed(901)} after b moved it to P2")
    d = await make_user(db, workspace, "d", NON_ADMIN_TOP, {P1: PROJECT_ADMIN})
    status, body, _ = await write(stack, d.as_client, item(story_field, 11, 901, "Story"))
    if http_decision(status, body) != "forbidden":
        mismatches.append(f"d (P1 only) writes Story 901, now in P2: {status} {body}")
    status, body, _ = await write(stack, a.as_client, item(story_field, 12, 901, "Story"))
    if status != 200:
        mismatches.append(f"a (financial on P2) writes Story 901, now in P2: {status} {body}")
    stored = await current(db, workspace, "Story", 901, fid)
    assert stored is not None
    if await can_read(stack, d.as_client, "Story", 901, fid, stored[0]) != {"list": False, "get": False,
                                                                             "history": False}:
        mismatches.append("d (P1 only) still reads Story 901 after it moved to P2")
    # Administrators place anything anywhere.
    await attempt(admin_person, [("Story", 901, P3), ("Story", 906, P3)], "allowed", "an admin places in P3")

    # A placement and a write in one message: the write is checked with the placement in force.
    outcomes = await queue.send(a.key, workspace.id, register_command(workspace.id, [("Story", 907, P1)]),
                                command(workspace.id, fid, 907, 5, subject_type="Story"))
    if [o["status"] for o in outcomes] != ["succeeded", "succeeded"]:
        mismatches.append(f"a places Story 907 in P1 then writes it, in one message: {outcomes}")
    assert not mismatches, "\n".join(mismatches)


# --- changes of roles, memberships and keys ------------------------------------------------------------------


async def test_lowered_role_and_removed_membership_apply_to_the_next_write(
        stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace, queue: QueueClient) -> None:
    """The gateway caches a principal for a few seconds, but the worker reads roles, memberships and keys in the
    transaction that applies each write: a change refuses the very next write, over HTTP and the queue."""
    user = await make_user(db, workspace, "lowered", "reports_viewer", {P1: "financial"})
    estimate = await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="number",
                                        write_access="reports_viewer", read_access="reports_viewer")
    project_field = await stack.create_field(workspace, name="Budget", subject_type="Workspace",
                                             value_type="number", write_access="financial", read_access="financial")
    for value in (1, 2):  # the second answer comes from the gateway's cache of the principal
        status, body, _ = await write(stack, user.as_client, item(estimate, value, 1, "Estimate"))
        assert status == 200, body
    status, body, _ = await write(stack, user.as_client, item(project_field, 1, int(P1), "Workspace"))
    assert status == 200, body

    await db.execute("UPDATE users SET account_role = 'project_lead' WHERE id = $1", user.id)
    status, body, _ = await write(stack, user.as_client, item(estimate, 3, 1, "Estimate"))
    assert http_decision(status, body) == "forbidden", (status, body)
    assert queue_decision(await queue.write(user, int(estimate["id"]), "Estimate", 1, 4)) == "forbidden"
    stored = await current(db, workspace, "Estimate", 1, int(estimate["id"]))
    assert stored is not None and stored[1] == 2

    await db.execute("DELETE FROM project_memberships WHERE user_id = $1 AND project = $2", user.id, P1)
    status, body, _ = await write(stack, user.as_client, item(project_field, 2, int(P1), "Workspace"))
    assert http_decision(status, body) == "forbidden", (status, body)
    stored_project = await current(db, workspace, "Workspace", P1, int(project_field["id"]))
    assert stored_project is not None and stored_project[1] == 1
    # Reads see memberships at once (they are read in the query) ...
    assert await can_read(stack, user.as_client, "Workspace", P1, int(project_field["id"]), stored_project[0]) == {
        "list": False, "get": False, "history": False}
    # ... and the lowered role once the gateway's cache of the principal (5 s) expired.
    await asyncio.sleep(5.2)
    assert await can_read(stack, user.as_client, "Estimate", 1, int(estimate["id"]), stored[0]) == {
        "list": False, "get": False, "history": False}

    # A revoked key: the worker refuses its commands as unauthenticated (401), even while the gateway caches it.
    keyed = await make_user(db, workspace, "revoked", ACCOUNT_ADMIN)
    status, body, _ = await write(stack, keyed.as_client, item(estimate, 5, 2, "Estimate"))
    assert status == 200, body
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE user_id = $1", keyed.id)
    status, body, _ = await write(stack, keyed.as_client, item(estimate, 6, 2, "Estimate"))
    assert status == 401, body
    outcome = await queue.write(keyed, int(estimate["id"]), "Estimate", 2, 7)
    assert outcome["status"] == "failed" and outcome["errors"][0]["type"] == "unauthenticated", outcome
    stored = await current(db, workspace, "Estimate", 2, int(estimate["id"]))
    assert stored is not None and stored[1] == 5


# --- definitions ---------------------------------------------------------------------------------------------


async def test_definitions_take_an_admin_and_levels_of_the_subject_s_kind(
        stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    lead = await make_user(db, workspace, "lead", NON_ADMIN_TOP, {P1: PROJECT_ADMIN})
    admin_person = await make_user(db, workspace, "admin", ACCOUNT_ADMIN)
    spec = {"name": "Points", "subject_type": "Story", "value_type": "number"}
    mismatches: list[str] = []

    status, body, _ = await stack.request("POST", FIELDS, lead.as_client, json={"custom_field": spec})
    if http_decision(status, body) != "forbidden":
        mismatches.append(f"a non-admin defines a field: {status} {body}")
    made = await stack.create_field(admin_person.as_client, **spec)
    if (made["write_access"], made["read_access"]) != (PROJECT_ADMIN, LOWEST_PROJECT):
        mismatches.append(f"defaults of a Story field: {made}")
    made_account = await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="number")
    if (made_account["write_access"], made_account["read_access"]) != (ACCOUNT_ADMIN, ACCOUNT_ADMIN):
        mismatches.append(f"defaults of an Estimate field: {made_account}")
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{made['id']}", lead.as_client,
                                          json={"custom_field": {"write_access": LOWEST_PROJECT}})
    if http_decision(status, body) != "forbidden":
        mismatches.append(f"a non-admin changes a field's write_access: {status} {body}")
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{made['id']}", lead.as_client)
    if http_decision(status, body) != "forbidden":
        mismatches.append(f"a non-admin deletes a field: {status} {body}")

    for subject_type, kind_levels, wrong in (("Estimate", ACCOUNT_ROLES, PROJECT_PERMISSIONS),
                                              ("User", ACCOUNT_ROLES, PROJECT_PERMISSIONS),
                                              ("Story", (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN),
                                               ACCOUNT_ROLES[:-1]),
                                              ("Workspace", (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN),
                                               ACCOUNT_ROLES[:-1])):
        for which, level in itertools.product(("write_access", "read_access"), wrong):
            status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": {
                "name": f"{subject_type} {which} {level}", "subject_type": subject_type, "value_type": "number",
                which: level}})
            if status != 422 or body["errors"][0]["field"] != which:
                mismatches.append(f"{subject_type} field with {which}={level}: {status} {body}")
        for level in kind_levels:
            status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": {
                "name": f"{subject_type} ok {level}", "subject_type": subject_type, "value_type": "number",
                "write_access": level, "read_access": level}})
            if status != 201:
                mismatches.append(f"{subject_type} field with levels {level}: {status} {body}")
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{made['id']}", workspace,
                                          json={"custom_field": {"read_access": "reports_viewer"}})
    if status != 422:
        mismatches.append(f"a Story field changed to read_access reports_viewer: {status} {body}")
    status, body, _ = await stack.request("PATCH", f"{FIELDS}/{made_account['id']}", workspace,
                                          json={"custom_field": {"write_access": PROJECT_ADMIN}})
    if status != 422:
        mismatches.append(f"an Estimate field changed to write_access project_admin: {status} {body}")
    stored = await db.fetchrow("SELECT write_access, read_access FROM custom_fields WHERE id = $1",
                               int(made_account["id"]))
    if tuple(stored) != (ACCOUNT_ADMIN, ACCOUNT_ADMIN):
        mismatches.append(f"the refused change was stored: {dict(stored)}")
    assert not mismatches, "\n".join(mismatches)


# --- leaks around the read filter ----------------------------------------------------------------------------


async def test_an_operation_answers_only_the_values_its_reader_may_read(
        stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    """GET /api/v1/operations/{id} returns the values an operation wrote: it must not show a reader values whose
    read_access they lack (the operation id is public: every value a reader may see names it)."""
    reader = await make_user(db, workspace, "reader", LOWEST_ACCOUNT)
    public = await stack.create_field(workspace, name="Public", subject_type="Estimate", value_type="number",
                                      read_access=LOWEST_ACCOUNT)
    secret = await stack.create_field(workspace, name="Secret", subject_type="Estimate", value_type="number")
    assert secret["read_access"] == ACCOUNT_ADMIN
    status, body, _ = await write(stack, workspace, item(public, 1, 5), item(secret, 123456, 5))
    assert status == 200, body
    status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Estimate&with_subject_id=5",
                                          reader.as_client)
    assert status == 200 and len(body["results"]) == 1, body  # the read filter hides the secret ...
    [shown] = body["custom_field_values"].values()
    status, body, _ = await stack.request("GET", f"/api/v1/operations/{shown['operation_id']}", reader.as_client)
    assert status in (200, 404), body
    shown_fields = {v["custom_field_id"] for v in body.get("result", {}).get("custom_field_values", {}).values()}
    assert str(secret["id"]) not in {str(f) for f in shown_fields}, f"... but the operation shows it: {body}"


async def test_an_idempotent_replay_is_checked_against_its_sender(
        stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    """The same request and Idempotency-Key sent by a user who may not write the field: refused (403), not
    answered with the administrator's success and the value written (which the user may not read either)."""
    low = await make_user(db, workspace, "low", LOWEST_ACCOUNT)
    secret = await stack.create_field(workspace, name="Secret", subject_type="Estimate", value_type="number")
    request = item(secret, 987654, 5)
    status, body, _ = await write(stack, workspace, request, headers={"Idempotency-Key": "k-1"})
    assert status == 200, body
    status, body, _ = await write(stack, low.as_client, request, headers={"Idempotency-Key": "k-1"})
    assert http_decision(status, body) == "forbidden", (status, body)


async def test_a_placement_names_its_project_as_memberships_do(
        stack: Stack, db: asyncpg.Connection[Any], workspace: Workspace) -> None:
    """Memberships (admin API) store a project in its canonical form (a Workspace id as a plain integer, a
    Plane UUID in lower case) and refuse anything else; a placement naming the same project differently must
    reach the same members (or be refused), not strand the subject where only administrators reach it."""
    member = await make_user(db, workspace, "member", NON_ADMIN_TOP)
    status, body, _ = await stack.request("PUT", f"/api/v1/users/{member.id}/memberships/0{P1}", workspace,
                                          json={"membership": {"permission": PROJECT_ADMIN}})
    assert status == 201, body
    assert await db.fetchval("SELECT project FROM project_memberships WHERE user_id = $1", member.id) == P1
    story = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number",
                                     write_access=LOWEST_PROJECT)
    problems = []
    for n, project in enumerate((f"0{P1}", f" {P1}", "P1")):
        status, body = await register(stack, workspace, [("Story", 70 + n, project)])
        if status == 422:
            continue  # refused: fine
        stored = await db.fetchval("SELECT project FROM subject_projects WHERE subject_id = $1", str(70 + n))
        status, body, _ = await write(stack, member.as_client, item(story, 1, 70 + n))
        if project != "P1" and status != 200:
            problems.append(f"placed in {project!r} (stored as {stored!r}): a project_admin of {P1} gets "
                            f"{status} {body}")
        if project == "P1":
            problems.append(f"placed in {project!r}, which no membership can name (stored as {stored!r})")
    assert not problems, "\n".join(problems)
