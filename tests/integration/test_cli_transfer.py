"""``cfv import values`` and ``cfv export values`` (issue 12, operator commands), run as the real command line
(``python -m cfv``, a child process) against the real stack: a gateway, a worker and a relay in this process,
PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import pty
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from cfv.domain.fields import FieldDefinition, SubjectType, ValueType
from cfv.settings import Settings
from cfv.store.database import connect
from cfv.transfer import Refused, Sender, check_rows, export_csv, plan_batches, read_csv
from support import Stack, Workspace, add_users, free_port, running_stack, wait_for
from support.kantata import FIELDS, VALUES, item, write

HEADER = "subject_type,subject_id,custom_field_id,value"
SUMMARY = re.compile(r"^(\d+) rows sent in (\d+) batches(?: \((\d+) still being applied\))?, (\d+) skipped, "
                     r"[\d.]+ s$")


@dataclass
class Ran:
    """A finished ``cfv`` process."""

    code: int
    stdout: str
    stderr: str

    def summary(self) -> tuple[int, int, int]:
        """(rows sent, batches, skipped) of an import's last line."""
        found = SUMMARY.match(self.stdout.strip().splitlines()[-1])
        assert found, self
        return int(found[1]), int(found[2]), int(found[4])


def environment(settings: Settings, api_key: str | None) -> dict[str, str]:
    """This test's settings as the command line reads them, and nothing inherited from the caller's CFV_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
               CFV_HTTP_HOST=settings.http_host, CFV_HTTP_PORT=str(settings.http_port), CFV_METRICS_PORT="0",
               CFV_LOG_LEVEL="DEBUG")  # the most it could ever log: the key must be in none of it
    if api_key is not None:
        env["CFV_API_KEY"] = api_key
    return env


async def cfv(settings: Settings, *args: str, api_key: str | None = None, stdin: bytes | None = None,
              stderr: int | None = None) -> Ran:
    """Run ``python -m cfv ARGS`` to its end (off this event loop, which serves the stack meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cfv", *args, env=environment(settings, api_key),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr is None else stderr)
    out, err = await asyncio.wait_for(process.communicate(stdin), 180)
    ran = Ran(process.returncode or 0, out.decode(), (err or b"").decode())
    if api_key is not None:
        assert api_key not in ran.stdout and api_key not in ran.stderr, "the API key was printed"
    return ran


def csv_text(header: str, rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file: ``header``, then each row's cells (strings as they are, the rest as JSON)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header.split(","))
    writer.writerows([cell if isinstance(cell, str) else orjson.dumps(cell).decode() for cell in row]
                     for row in rows)
    return out.getvalue()


def save(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def current(db: asyncpg.Connection[Any], workspace: Workspace) -> dict[tuple[str, str, int], tuple[Any, int]]:
    """The workspace's current values: (subject type, subject id, field) → (value, seq)."""
    rows = await db.fetch("SELECT subject_type, subject_id, custom_field_id, value, seq FROM current_values "
                          "WHERE workspace_id = $1 AND value_id IS NOT NULL", workspace.id)
    return {(r["subject_type"], r["subject_id"], r["custom_field_id"]): (r["value"], r["seq"]) for r in rows}


async def row_counts(db: asyncpg.Connection[Any]) -> tuple[int, int, int]:
    """(value versions, value events, operations)."""
    row = await db.fetchrow("SELECT (SELECT count(*) FROM value_versions) AS v, "
                            "(SELECT count(*) FROM events WHERE type LIKE 'cfv.value.%') AS e, "
                            "(SELECT count(*) FROM operations) AS o")
    assert row is not None
    return row["v"], row["e"], row["o"]


async def story_fields(stack: Stack, workspace: Workspace) -> dict[str, int]:
    """Five fields of Stories, one per type, by name."""
    made = {}
    for name, value_type in (("Points", "number"), ("Note", "string"), ("Budget", "currency"), ("Due", "date"),
                             ("Done", "boolean")):
        field = await stack.create_field(workspace, name=name, subject_type="Story", value_type=value_type)
        made[name] = int(field["id"])
    return made


def story_values(story: int) -> dict[str, Any]:
    """A value of each of :func:`story_fields` for ``story``."""
    return {"Points": story * 1.5 if story % 2 else story, "Note": f"note {story}" if story % 3 else str(story),
            "Budget": [story * 10, "EUR" if story % 2 else "USD"],
            "Due": f"2024-{1 + story % 12:02d}-{1 + story % 28:02d}", "Done": story % 2 == 0}


def quoted_if_needed(value: Any) -> Any:
    """A string that reads as JSON ("12") is written as a JSON string, as the import reads cells."""
    if isinstance(value, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            orjson.loads(value)
            return orjson.dumps(value).decode()
    return value


async def test_an_import_writes_every_row_once_and_again_changes_nothing(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    fields = await story_fields(stack, workspace)
    rows = [("Story", str(story), str(fields[name]), quoted_if_needed(value))
            for story in range(1, 51) for name, value in story_values(story).items()]
    assert len(rows) == 250
    path = save(tmp_path, "values.csv", csv_text(HEADER, rows))
    expected = {("Story", str(story), fields[name]): (value, 1)
                for story in range(1, 51) for name, value in story_values(story).items()}

    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 0, ran
    assert ran.summary() == (250, 3, 0)
    assert "rows/s" not in ran.stderr  # standard error is a pipe here: no progress bar

    async def all_applied() -> bool:
        return len(await current(db, workspace)) == 250
    await wait_for(all_applied, 20, "250 values")
    assert await current(db, workspace) == expected

    async def all_announced() -> bool:
        return (await row_counts(db))[1] == 250
    await wait_for(all_announced, 20, "250 events")
    before = await row_counts(db)

    # The same file again: every batch is answered from its idempotency record; nothing is applied twice.
    again = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert again.code == 0, again
    assert again.summary() == (250, 3, 0)
    await asyncio.sleep(0.5)  # anything applied late would show by now
    assert await current(db, workspace) == expected  # every seq still 1
    versions, events, _ = await row_counts(db)
    assert (versions, events) == before[:2] == (250, 250)


async def test_bad_rows_send_nothing_unless_skipped(stack: Stack, workspace: Workspace,
                                                    db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    fields = await story_fields(stack, workspace)
    owner = int((await stack.create_field(workspace, name="Owner", subject_type="Story", value_type="relation",
                                          relation_target="user"))["id"])
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    red, green, _ = (int(choice["id"]) for choice in colour["choices"])
    green_uuid = str(await db.fetchval("SELECT uuid FROM custom_field_choices WHERE id = $1", green))
    title = await stack.create_field(workspace, name="Title", subject_type="Story", value_type="string",
                                     required=True)
    await add_users(db, workspace.id, ids=[501])
    points, note, due = str(fields["Points"]), str(fields["Note"]), str(fields["Due"])
    text = csv_text(HEADER, [
        ("Story", "1", points, 5),                # 2
        ("Story", "1", "999999", 5),              # 3: no such field
        ("Story", "2", points, "many"),           # 4: not a number
        ("Story", "abc", points, 5),              # 5: not a Story id
        ("Story", "2", note, "hello"),            # 6
        ("Story", "3", due, "2024-02-30"),        # 7: not a date
        ("Story", "3", str(owner), 501),          # 8
        ("Story", "4", str(owner), 502),          # 9: no such user
        ("Story", "4", due, "2024-02-28"),        # 10
        ("Story", "5", colour["id"], [red, green_uuid]),  # 11: choices by id and by UUID
        ("Story", "6", colour["id"], [red, 999999]),      # 12: not a choice of the field
        ("Story", "6", title["id"], " "),                 # 13: blank, and the field is required
    ])
    path = save(tmp_path, "bad.csv", text)
    operations_before = (await row_counts(db))[2]

    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 1, ran
    reported = [line for line in ran.stderr.splitlines() if line.startswith("line ")]
    assert reported == [
        "line 3, column custom_field_id: custom field 999999 not found",
        "line 4, column value: Points: must be a number",
        "line 5, column subject_id: Story ids are positive integers",
        "line 7, column value: Due: must be a real calendar date",
        "line 9, column value: Owner: no such user in this workspace: 502",
        "line 12, column value: Colour: not a choice of this field: 999999",
        "line 13, column value: Title: is required: a blank value is refused",
    ], ran.stderr
    assert "7 of 12 rows are invalid; nothing was sent" in ran.stderr
    assert not ran.stdout
    assert await current(db, workspace) == {}
    assert (await row_counts(db))[2] == operations_before  # not one request reached a worker

    checked = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", "--dry-run")
    assert checked.code == 1 and "nothing was sent" in checked.stderr  # a dry run needs no key

    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", "--skip-invalid",
                    api_key=workspace.key)
    assert ran.code == 0, ran
    assert ran.summary() == (5, 1, 7)
    assert len([line for line in ran.stderr.splitlines() if line.startswith("line ")]) == 7
    assert await current(db, workspace) == {
        ("Story", "1", fields["Points"]): (5, 1), ("Story", "2", fields["Note"]): ("hello", 1),
        ("Story", "3", owner): ([501], 1), ("Story", "4", fields["Due"]): ("2024-02-28", 1),
        ("Story", "5", int(colour["id"])): ([red, green], 1)}


async def test_the_key_must_be_the_workspaces(settings: Settings, workspace: Workspace, other_workspace: Workspace,
                                              tmp_path: Path) -> None:
    path = save(tmp_path, "one.csv", csv_text(HEADER, [("Story", "1", "1", 5)]))
    ran = await cfv(settings, "import", "values", path, "--workspace", "acme", api_key=other_workspace.key)
    assert ran.code == 1 and "the API key is not a key of workspace acme (it is one of globex)" in ran.stderr, ran
    ran = await cfv(settings, "import", "values", path, "--workspace", "acme", "--api-key", other_workspace.key)
    assert ran.code == 1 and "(it is one of globex)" in ran.stderr, ran
    assert other_workspace.key not in ran.stdout + ran.stderr
    ran = await cfv(settings, "import", "values", path, "--workspace", "acme", api_key="cfv_nope_nope")
    assert ran.code == 1 and "the API key is not a key of workspace acme\n" in ran.stderr, ran
    ran = await cfv(settings, "import", "values", path, "--workspace", "acme")
    assert ran.code == 2 and "CFV_API_KEY" in ran.stderr, ran
    ran = await cfv(settings, "import", "values", path, "--workspace", "nowhere", api_key=workspace.key)
    assert ran.code == 1 and "no workspace nowhere" in ran.stderr, ran
    bad = save(tmp_path, "bad.csv", "subject,id,field,value\nStory,1,1,5\n")
    ran = await cfv(settings, "import", "values", bad, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 1 and "unknown column(s) 'subject', 'id', 'field'" in ran.stderr, ran


async def test_a_refused_batch_stops_the_import_and_a_corrected_file_resumes_it(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    code = await stack.create_field(workspace, name="Code", subject_type="Story", value_type="string",
                                    unique_constraint=True)
    status, body, _ = await write(stack, workspace, item(code, "TAKEN", subject_id=1000))
    assert status == 200, body
    # Story n gets C-n, but line 140 (story 139) the value story 1000 holds: only the worker can tell.
    rows = [("Story", str(n), code["id"], "TAKEN" if n == 139 else f"C-{n}") for n in range(1, 151)]
    path = save(tmp_path, "codes.csv", csv_text(HEADER, rows))

    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 1, ran
    assert "batch 2 (lines 102-151) was refused (HTTP 422):" in ran.stderr, ran.stderr
    assert re.search(r"^  line 140, column value: .*TAKEN", ran.stderr, re.MULTILINE), ran.stderr
    values = await current(db, workspace)
    assert len(values) == 101 and all(seq == 1 for _, seq in values.values())  # batch 1, and story 1000's

    rows[138] = ("Story", "139", code["id"], "C-139")
    path = save(tmp_path, "codes.csv", csv_text(HEADER, rows))
    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 0, ran
    assert ran.summary() == (150, 2, 0)
    values = await current(db, workspace)
    assert len(values) == 151
    assert all(seq == 1 for _, seq in values.values())  # batch 1 was answered from its record, not applied again
    assert values[("Story", "139", int(code["id"]))] == ("C-139", 1)


async def test_fields_by_name_export_and_a_round_trip_into_another_workspace(
        stack: Stack, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any],
        tmp_path: Path) -> None:
    fields = await story_fields(stack, workspace)
    size = int((await stack.create_field(workspace, name="Size", subject_type="User", value_type="number"))["id"])
    retired = int((await stack.create_field(workspace, name="Retired", subject_type="Story",
                                            value_type="string"))["id"])
    # The other workspace has fields of the same names (and other ids).
    await stack.create_field(other_workspace, name="Size", subject_type="User", value_type="number")
    theirs = await story_fields(stack, other_workspace)
    assert set(theirs.values()).isdisjoint(fields.values())

    rows: list[tuple[str, ...]] = [("Story", str(story), name, quoted_if_needed(value))
                                   for story in (3, 12, 7) for name, value in story_values(story).items()]
    rows += [("User", "5", "Size", "42"), ("Story", "3", "Retired", "old"), ("Story", "7", "Retired", "old")]
    path = save(tmp_path, "by-name.csv", csv_text("subject_type,subject_id,custom_field,value", rows))
    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
    assert ran.code == 0, ran
    assert ran.summary() == (18, 1, 0)
    values = await current(db, workspace)
    assert values[("User", "5", size)] == (42, 1)
    assert values[("Story", "12", fields["Note"])] == ("12", 1)

    # A deleted value and a deleted field's values are left out.
    value_id = await db.fetchval("SELECT value_id FROM current_values WHERE subject_id = '7' AND custom_field_id = $1",
                                 fields["Done"])
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{value_id}", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{retired}", workspace)
    assert status in (202, 204), body

    async def deleted() -> bool:
        return await db.fetchval("SELECT count(*) FROM current_values WHERE custom_field_id = $1 AND value_id IS "
                                 "NOT NULL", retired) == 0
    await wait_for(deleted, 20, "the field's values to be deleted")

    exported = await cfv(stack.settings, "export", "values", "--workspace", "acme")
    assert exported.code == 0, exported
    assert exported.stderr.strip().endswith("exported 15 values")
    expected = [("Story", story, str(fields[name]), _cell(story_values(int(story))[name]))
                for story in ("12", "3", "7")  # subject ids in the order of their text
                for name in ("Points", "Note", "Budget", "Due", "Done") if (story, name) != ("7", "Done")]
    assert exported.stdout == csv_text(HEADER, [*expected, ("User", "5", str(size), "42")])

    users_only = await cfv(stack.settings, "export", "values", "--workspace", "acme", "--subject-type", "User")
    assert users_only.stdout.splitlines() == [HEADER, f"User,5,{size},42"]

    # Export by name, import into the other workspace: the same values, on its own fields.
    by_name = await cfv(stack.settings, "export", "values", "--workspace", "acme", "--field-names")
    assert by_name.code == 0 and by_name.stdout.startswith("subject_type,subject_id,custom_field,value\n")
    path = save(tmp_path, "export.csv", by_name.stdout)
    ran = await cfv(stack.settings, "import", "values", path, "--workspace", "globex", api_key=other_workspace.key)
    assert ran.code == 0, ran
    assert ran.summary() == (15, 1, 0)
    again = await cfv(stack.settings, "export", "values", "--workspace", "globex", "--field-names")
    assert again.stdout == by_name.stdout
    names = {**{v: k for k, v in fields.items()}, size: "Size"}
    their_names = {v: k for k, v in (await _field_ids(db, other_workspace)).items()}
    assert {(t, s, their_names[f]): v for (t, s, f), v in (await current(db, other_workspace)).items()} == {
        (t, s, names[f]): v for (t, s, f), v in (await current(db, workspace)).items() if f != retired}


def _cell(value: Any) -> str:
    """The cell the export writes for ``value``: a string as it is unless it reads as JSON, the rest as JSON."""
    rendered = quoted_if_needed(value)
    return rendered if isinstance(rendered, str) else orjson.dumps(rendered).decode()


async def _field_ids(db: asyncpg.Connection[Any], workspace: Workspace) -> dict[str, int]:
    rows = await db.fetch("SELECT name, id FROM custom_fields WHERE workspace_id = $1 AND deleted_at IS NULL",
                          workspace.id)
    return {r["name"]: r["id"] for r in rows}


async def test_export_streams_in_chunks(stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    for start in range(1, 41, 20):
        status, body, _ = await write(stack, workspace, *[item(field, n, subject_id=n) for n in range(start,
                                                                                                     start + 20)])
        assert status == 200, body
    connection = await connect(stack.settings.database_url)
    try:
        out = io.StringIO()
        assert await export_csv(connection, workspace.id, out, chunk=7) == 40
    finally:
        await connection.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == HEADER and len(lines) == 41
    assert sorted(lines[1:]) == sorted(f"Story,{n},{field['id']},{n}" for n in range(1, 41))


async def test_rate_limited_batches_are_retried(settings: Settings, workspace: Workspace,
                                                db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    limited = settings.model_copy(update={"rate_limit_writes": 2, "rate_limit_window": 2.0,
                                          "rate_limit_prefix": f"cfvtest:{os.urandom(8).hex()}"})
    async with running_stack(limited) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        path = save(tmp_path, "many.csv", csv_text(HEADER, [("Story", str(n), field["id"], n) for n in range(1, 202)]))
        ran = await cfv(limited, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
        assert ran.code == 0, ran
        assert ran.summary() == (201, 3, 0)
        assert re.search(r"batch 3 \(line 202\): HTTP 429, retrying in [\d.]+ s", ran.stderr), ran.stderr
        assert len(await current(db, workspace)) == 201


async def test_batches_accepted_but_not_yet_applied(settings: Settings, workspace: Workspace,
                                                    db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    hurried = settings.model_copy(update={"write_timeout": 0.001})  # the gateway answers 202 rather than wait
    async with running_stack(hurried) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        path = save(tmp_path, "many.csv", csv_text(HEADER, [("Story", str(n), field["id"], n) for n in range(1, 151)]))
        for _ in range(2):  # the second time, each batch is answered from its record: nothing applied twice
            ran = await cfv(hurried, "import", "values", path, "--workspace", "acme", api_key=workspace.key)
            assert ran.code == 0, ran
            assert ran.summary() == (150, 2, 0)
            assert re.search(r" \([12] still being applied\), ", ran.stdout), ran.stdout
            assert re.search(r"^batch \d \(lines [\d-]+\) was accepted and is still being applied: GET "
                             r"/api/v1/operations/[0-9a-f-]{36} tells how it ends$", ran.stderr, re.MULTILINE), ran

            async def applied() -> bool:
                return await db.fetchval("SELECT count(*) FROM operations WHERE status = 'pending'") == 0
            await wait_for(applied, 20, "the batches to be applied")
            values = await current(db, workspace)
            assert len(values) == 150 and all(seq == 1 for _, seq in values.values())
        assert (await row_counts(db))[0] == 150


async def test_a_progress_bar_on_a_terminal(stack: Stack, workspace: Workspace, tmp_path: Path) -> None:
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    path = save(tmp_path, "few.csv", csv_text(HEADER, [("Story", str(n), field["id"], n) for n in range(1, 121)]))

    async def on_a_terminal(*flags: str) -> tuple[Ran, str]:
        main, terminal = pty.openpty()
        try:
            reading = asyncio.create_task(asyncio.to_thread(_read_all, main))
            ran = await cfv(stack.settings, "import", "values", path, "--workspace", "acme", *flags,
                            api_key=workspace.key, stderr=terminal)
            os.close(terminal)
            return ran, await reading
        finally:
            os.close(main)

    ran, shown = await on_a_terminal()
    assert ran.code == 0, (ran, shown)
    assert "120/120" in shown and "rows/s" in shown and "ETA" in shown, shown
    assert workspace.key not in shown
    ran, shown = await on_a_terminal("--no-progress")
    assert ran.code == 0 and "rows/s" not in shown, shown


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


async def test_an_unreachable_gateway_stops_the_import(workspace: Workspace) -> None:
    waits: list[float] = []
    notes: list[str] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    points = FieldDefinition(1, workspace.id, "Points", SubjectType.STORY, ValueType.NUMBER)
    items = check_rows(workspace.id, read_csv(f"{HEADER}\nStory,1,1,5\n"), {1: points}).items
    sender = Sender(f"http://127.0.0.1:{free_port()}", workspace.key, attempts=3, sleep=no_wait,
                    on_retry=notes.append)
    with pytest.raises(Refused) as refused:
        await sender.send(plan_batches(items), lambda _: None)
    assert "batch 1 (line 2): the gateway at http://127.0.0.1:" in str(refused.value)
    assert str(refused.value).endswith("run the import again to resume")
    assert waits == [1.0, 2.0] and len(notes) == 2 and notes[0].startswith("batch 1 (line 2): ClientConnectorError")
    assert workspace.key not in str(refused.value) + "".join(notes)
