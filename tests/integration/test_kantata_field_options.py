"""Kantata's field options end to end: deleting a field deletes its values (on both faces, even against racing
writes), unique values, required fields, default values and external references of fields."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from support import EventCollector, Stack, Workspace, wait_for
from support.kantata import FIELDS, OPERATIONS, VALUES, assert_errors_shape, counts, item, values_of, write
from support.plane import Plane, a_uuid, new_project

DELETED = "cfv.value.deleted.v1"
ASYNC = {"Prefer": "respond-async"}
Db = Any  # an asyncpg connection with cfv's codecs


def before_of(value: dict[str, Any]) -> dict[str, Any]:
    """What a change event names as ``before`` for a value as Kantata answered it."""
    return {"id": int(value["id"]), "value": value["value"], **value["external_reference"]}


async def written(stack: Stack, workspace: Workspace, *items: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``items`` (200 expected); return the values answered."""
    status, body, _ = await write(stack, workspace, *items)
    assert status == 200, body
    return values_of(body)


async def history(stack: Stack, workspace: Workspace, subject_type: str, subject_id: int | str,
                  field_id: int | str) -> list[tuple[str, int, Any]]:
    """(change, sequence, value) of each version of one value, oldest first."""
    status, body, _ = await stack.request(
        "GET", f"{VALUES}/history?subject_type={subject_type}&subject_id={subject_id}&custom_field_id={field_id}",
        workspace)
    assert status == 200, body
    return [(v["change"], v["sequence"], v["value"])
            for v in (body["custom_field_value_versions"][r["id"]] for r in body["results"])]


def refused(status: int, body: Any, expected_status: int, error_type: str) -> None:
    """Assert an error answer of ``expected_status`` whose errors are all of ``error_type``."""
    assert status == expected_status, body
    assert {e["type"] for e in assert_errors_shape(body)} == {error_type}, body


async def field_of(stack: Stack, workspace: Workspace, field_id: str) -> dict[str, Any]:
    """A field as GET answers it."""
    status, body, _ = await stack.request("GET", f"{FIELDS}/{field_id}", workspace)
    assert status == 200, body
    found: dict[str, Any] = body["custom_fields"][field_id]
    return found


def per_key(events: EventCollector, field_ids: set[int]) -> dict[tuple[str, int], list[tuple[str, dict[str, Any]]]]:
    """The events of ``field_ids``, by (subject_id, field id), in arrival order, with their routing keys."""
    grouped: dict[tuple[str, int], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for message, event in zip(events.messages, events.events, strict=True):
        data = event["data"]
        if data["custom_field_id"] in field_ids:
            grouped[(data["subject_id"], data["custom_field_id"])].append((message.routing_key or "", event))
    return grouped


async def operation_outcome(stack: Stack, workspace: Workspace, operation_id: str) -> dict[str, Any]:
    """The finished operation (waits while it is pending)."""
    body: dict[str, Any] = {}

    async def finished() -> bool:
        nonlocal body
        status, body, _ = await stack.request("GET", f"{OPERATIONS}/{operation_id}", workspace)
        assert status == 200, body
        return body["status"] != "pending"
    await wait_for(finished, what=f"operation {operation_id}")
    return body


# --- deleting a field ---------------------------------------------------------------------------------


async def test_deleting_fields_deletes_and_announces_each_value(stack: Stack, workspace: Workspace,
                                                               other_workspace: Workspace, db: Db,
                                                               events: EventCollector) -> None:
    def story_field(name: str, value_type: str, **options: Any) -> Any:
        return stack.create_field(workspace, name=name, subject_type="Story", value_type=value_type, **options)

    # Plain, required and unique fields all lose every value; "kept" and another workspace's field keep theirs.
    plain = await story_field("Plain", "string")
    needed = await story_field("Needed", "number", required=True)
    unique = await story_field("Unique", "email", unique_constraint=True)
    kept = await story_field("Kept", "string")
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="string")
    jira = {"external_id": "J-1", "external_source": "jira"}
    first = await written(stack, workspace, item(plain, "a", 1), item(plain, "b", 2), item(plain, "c", 3),
                          item(needed, 0, 1), item(needed, 7, 2), item(unique, "ann@example.com", 1),
                          item(unique, "bob@example.com", 2), item(kept, "k1", 1), item(kept, "k2", 2))
    second = await written(stack, workspace, {**item(plain, "a2", 1), "external_reference": jira},
                           item(needed, 5, 1), item(unique, "cat@example.com", 1))
    [their_value] = await written(stack, other_workspace, item(theirs, "t", 1))
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{first[2]['id']}", workspace)  # plain on 3
    assert status == 204, body
    current = {(v["custom_field_id"], v["subject_id"]): v for v in first + second}
    del current[(plain["id"], 3)]
    doomed = [plain, needed, unique]
    doomed_ids = {int(f["id"]) for f in doomed}
    written_before = 9 + 3 + 1 + 1
    await events.wait_for_count(written_before)

    for field in doomed:
        status, body, _ = await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)
        assert (status, body) == (204, None)
    removed = {k: v for k, v in current.items() if int(k[0]) in doomed_ids}
    assert len(removed) == 6
    await events.wait_for_count(written_before + len(removed))
    await asyncio.sleep(0.3)  # anything more would be a stray event
    assert len(events.messages) == written_before + len(removed)
    deletions = {(e["data"]["custom_field_id"], e["data"]["subject_id"]): (key, e)
                 for key, e in zip((m.routing_key for m in events.messages[written_before:]),
                                   events.events[written_before:], strict=True)}
    assert set(deletions) == {(int(f), str(s)) for f, s in removed}
    for (field_id, subject_id), value in removed.items():
        routing_key, event = deletions[(int(field_id), str(subject_id))]
        assert routing_key == f"acme.Story.{field_id}.deleted"
        assert event["type"] == DELETED and event["data"]["after"] is None, event
        assert event["data"]["before"] == before_of(value), event
        assert event["data"]["sequence"] == value["sequence"] + 1, event
        versions = await history(stack, workspace, "Story", subject_id, field_id)
        assert versions[-1] == ("deleted", value["sequence"] + 1, None), versions
        assert len(versions) == value["sequence"] + 1
        status, body, _ = await stack.request("GET", f"{VALUES}/{value['id']}", workspace)
        refused(status, body, 404, "not_found")
    assert await history(stack, workspace, "Story", 1, plain["id"]) == [
        ("created", 1, "a"), ("replaced", 2, "a2"), ("deleted", 3, None)]
    assert await history(stack, workspace, "Story", 3, plain["id"]) == [("created", 1, "c"), ("deleted", 2, None)]
    assert await db.fetchval("SELECT count(*) FROM current_values WHERE custom_field_id = ANY($1::bigint[]) "
                             "AND value_id IS NOT NULL", list(doomed_ids)) == 0

    # The fields are gone: reads, writes (nothing stored) and second deletes answer 404.
    before = await counts(db)
    for field, value in ((plain, "x"), (needed, 1), (unique, "dan@example.com")):
        status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
        refused(status, body, 404, "not_found")
        status, body, _ = await write(stack, workspace, item(field, value, 9))
        refused(status, body, 404, "not_found")
        status, body, _ = await write(stack, workspace, item(field, value, 1), item(kept, "k9", 9))
        refused(status, body, 404, "not_found")
        status, body, _ = await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)
        refused(status, body, 404, "not_found")
    # Unknown fields and another workspace's field: 404, and nothing deleted there.
    for path in (f"{FIELDS}/999999", f"{FIELDS}/{theirs['id']}", f"{FIELDS}/abc"):
        status, body, _ = await stack.request("DELETE", path, workspace)
        refused(status, body, 404, "not_found")
    assert await counts(db) == before
    status, body, _ = await stack.request("GET", f"{VALUES}/{their_value['id']}", other_workspace)
    assert status == 200 and values_of(body)[0]["value"] == "t", body
    assert (await field_of(stack, other_workspace, theirs["id"]))["name"] == "Theirs"
    for value in first[7:]:  # kept's values, untouched
        status, body, _ = await stack.request("GET", f"{VALUES}/{value['id']}", workspace)
        assert status == 200 and values_of(body)[0] == value, body
    status, body, _ = await stack.request("GET", FIELDS, workspace)
    assert list(body["custom_fields"]) == [kept["id"]], body
    await asyncio.sleep(0.3)
    assert len(events.messages) == written_before + len(removed)


async def test_writes_racing_a_field_deletion_leave_no_value(stack: Stack, workspace: Workspace, db: Db,
                                                             events: EventCollector) -> None:
    queued = await stack.create_field(workspace, name="Queued", subject_type="Story", value_type="string")
    racing = await stack.create_field(workspace, name="Racing", subject_type="Story", value_type="number")
    kept = await stack.create_field(workspace, name="Kept", subject_type="Story", value_type="string")
    [kept_value] = await written(stack, workspace, item(kept, "stays", 1))

    async def send(field: dict[str, Any], n: int, delay: float = 0.0) -> str:
        await asyncio.sleep(delay)
        value = f"v{n}" if field is queued else n
        status, body, _ = await write(stack, workspace, item(field, value, n % 7 + 1), headers=ASYNC)
        assert status == 202, body
        operation_id: str = body["operation"]["id"]
        return operation_id

    async def delete(field: dict[str, Any], delay: float = 0.0) -> tuple[int, Any, dict[str, str]]:
        await asyncio.sleep(delay)
        return await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)

    # "queued": 40 writes accepted, then the delete; "racing": the delete sent amid 40 writes sent over ~80 ms.
    operations = list(await asyncio.gather(*(send(queued, n) for n in range(40))))
    status, body, _ = await delete(queued)
    assert (status, body) == (204, None)
    [*racing_operations, racing_deleted] = await asyncio.gather(*(send(racing, n, n * 0.002) for n in range(40)),
                                                                delete(racing, 0.04))
    assert racing_deleted[:2] == (204, None), racing_deleted
    operations += racing_operations
    # After the delete: every write is accepted, then refused.
    late = [await send(field, n) for field in (queued, racing) for n in range(3)]

    succeeded: set[int] = set()
    for operation_id in operations + late:
        outcome = await operation_outcome(stack, workspace, operation_id)
        if outcome["status"] == "succeeded":
            assert operation_id not in late, outcome
            succeeded |= {int(v["id"]) for v in values_of(outcome["result"])}
        else:
            assert outcome["status"] == "failed" and outcome["http_status"] == 404, outcome
            assert {e["type"] for e in outcome["errors"]} == {"not_found"}, outcome
            assert await db.fetchval("SELECT count(*) FROM value_versions WHERE operation_id = $1",
                                     uuid.UUID(operation_id)) == 0
    assert succeeded  # (the race was not vacuous)
    field_ids = {int(queued["id"]), int(racing["id"])}
    assert await db.fetchval("SELECT count(*) FROM current_values WHERE custom_field_id = ANY($1::bigint[]) "
                             "AND value_id IS NOT NULL", list(field_ids)) == 0
    status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Story", workspace)
    assert status == 200 and values_of(body) == [kept_value], body

    versions = await db.fetchval("SELECT count(*) FROM value_versions")
    await events.wait_for_count(versions)
    await asyncio.sleep(0.3)
    assert len(events.messages) == versions
    keys = per_key(events, field_ids)
    deleted_values: set[int] = set()
    for key, key_events in keys.items():
        assert [e["data"]["sequence"] for _, e in key_events] == list(range(1, len(key_events) + 1)), key
        types = [e["type"] for _, e in key_events]
        assert types[-1] == DELETED and types.count(DELETED) == 1, (key, types)
        last_routing, last = key_events[-1]
        assert last_routing == f"acme.Story.{key[1]}.deleted" and last["data"]["after"] is None
        assert last["data"]["before"]["id"] == key_events[-2][1]["data"]["after"]["id"], key
        deleted_values.add(last["data"]["before"]["id"])
    # Every value a write stored was either replaced by a later write of its key or deleted with its field.
    replaced = {e["data"]["before"]["id"] for k in keys.values() for _, e in k if e["type"] != DELETED
                and e["data"]["before"] is not None}
    assert succeeded == replaced | deleted_values
    stored_keys = await db.fetch("SELECT DISTINCT subject_id, custom_field_id FROM value_versions "
                                 "WHERE custom_field_id = ANY($1::bigint[])", list(field_ids))
    assert set(keys) == {(r["subject_id"], r["custom_field_id"]) for r in stored_keys}


async def test_deleting_a_plane_property_deletes_its_values(stack: Stack, workspace: Workspace,
                                                           other_workspace: Workspace, db: Db,
                                                           events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    summary = await plane.create_property(property_type="TEXT", display_name="Summary")
    points = await plane.create_property(property_type="DECIMAL", display_name="Points")
    work_items = [a_uuid() for _ in range(3)]
    for n, work_item in enumerate(work_items):
        status, body, _ = await plane.write(summary, f"s{n}", work_item)
        assert status == 201, body
    status, body, _ = await plane.write(summary, "s0 again", work_items[0], external_id="PL-1",
                                        external_source="plane")
    assert status == 200, body
    status, body, _ = await plane.write(points, 3, work_items[0])
    assert status == 201, body
    field_id = await db.fetchval("SELECT id FROM custom_fields WHERE uuid = $1", uuid.UUID(summary["id"]))
    current = {r["subject_id"]: r for r in await db.fetch(
        "SELECT subject_id, seq, value_id, value, external_id, external_source FROM current_values "
        "WHERE custom_field_id = $1", field_id)}
    assert len(current) == 3
    await events.wait_for_count(5)

    # Another workspace (by its own path, or by ours with its key) and unknown ids: 404, nothing deleted.
    other = Plane(stack, other_workspace, plane.project_id)
    for client, path in ((other, other.property_path(summary["id"])), (other, plane.property_path(summary["id"])),
                         (plane, plane.property_path(a_uuid())), (plane, plane.property_path("nope"))):
        status, body, _ = await client.request("DELETE", path)
        assert status == 404 and "not found" in body["error"], (path, body)  # Plane's error shape
    status, body, _ = await plane.request("GET", plane.property_path(summary["id"]))
    assert status == 200, body

    status, body, _ = await plane.request("DELETE", plane.property_path(summary["id"]))
    assert (status, body) == (204, None)
    received = await events.wait_for_count(8)
    await asyncio.sleep(0.3)
    assert len(events.messages) == 8
    deletions = {e["data"]["subject_id"]: (m.routing_key, e) for m, e in zip(events.messages[5:], received[5:],
                                                                              strict=True)}
    assert set(deletions) == set(work_items)
    for work_item, row in current.items():
        routing_key, event = deletions[work_item]
        assert routing_key == f"acme.WorkItem.{field_id}.deleted" and event["type"] == DELETED
        assert event["data"]["after"] is None and event["data"]["sequence"] == row["seq"] + 1
        assert event["data"]["before"] == {"id": row["value_id"], "value": row["value"],
                                           "external_id": row["external_id"],
                                           "external_source": row["external_source"]}
        versions = await history(stack, workspace, "WorkItem", work_item, field_id)
        assert versions[-1] == ("deleted", row["seq"] + 1, None), versions
    assert deletions[work_items[0]][1]["data"]["before"]["value"] == "s0 again"

    status, body, _ = await plane.request("GET", plane.property_path(summary["id"]))
    assert status == 404, body
    status, body, _ = await plane.request("GET", plane.values_path(work_items[1], summary["id"]))
    assert status == 404, body
    before = await counts(db)
    status, body, _ = await plane.write(summary, "again", work_items[1])
    assert status == 404, body
    status, body, _ = await plane.request("DELETE", plane.property_path(summary["id"]))
    assert status == 404, body
    assert await counts(db) == before
    assert await db.fetchval("SELECT count(*) FROM current_values WHERE custom_field_id = $1 "
                             "AND value_id IS NOT NULL", field_id) == 0
    status, body, _ = await plane.request("GET", plane.values_path(work_items[0], points["id"]))
    assert status == 200 and body["value"] == 3, body
    status, body, _ = await plane.request("GET", plane.all_values_path(work_items[0]))
    assert status == 200 and [v["property_id"] for v in body] == [points["id"]], body


# --- unique values ------------------------------------------------------------------------------------

# value type, a value, the same value (as another client may spell it), another value
UNIQUE_CASES: list[tuple[str, Any, Any, Any]] = [
    ("string", "INV-1", "INV-1", "INV-2"),
    ("url", "https://example.com/a", "https://example.com/a", "https://example.com/b"),
    ("email", "ann@example.com", "ann@EXAMPLE.com", "bob@example.com"),
    ("file", "report.pdf", "report.pdf", "other.pdf"),
    ("date", "2024-01-05", "2024-01-05", "2024-01-06"),
    ("datetime", "2024-01-05T10:00:00+00:00", "2024-01-05T10:00:00Z", "2024-01-05T11:00:00+00:00"),
    ("number", 42, 42.0, 43),
    ("currency", [10, "USD"], [10.0, "USD"], [10, "EUR"]),
]
NOT_UNIQUE: list[dict[str, Any]] = [
    {"value_type": "boolean"}, {"value_type": "single", "choices": ["a"]},
    {"value_type": "multi", "choices": ["a"]}, {"value_type": "relation", "relation_target": "user"},
]


async def test_unique_fields_refuse_a_value_another_subject_holds(stack: Stack, workspace: Workspace,
                                                                 db: Db) -> None:
    for spec in NOT_UNIQUE:
        status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": {
            "name": "No", "subject_type": "Story", "unique_constraint": True, **spec}})
        refused(status, body, 400, "validation")
        assert "unique_constraint" in body["errors"][0]["message"], body
    assert await db.fetchval("SELECT count(*) FROM custom_fields") == 0

    async def conflict(*items: dict[str, Any]) -> None:
        before = await counts(db)
        status, body, _ = await write(stack, workspace, *items)
        refused(status, body, 422, "conflict")
        assert await counts(db) == before

    for value_type, value, same, other in UNIQUE_CASES:
        unique = await stack.create_field(workspace, name=f"U {value_type}", subject_type="Story",
                                          value_type=value_type, unique_constraint=True)
        twin = await stack.create_field(workspace, name=f"T {value_type}", subject_type="Story",
                                        value_type=value_type, unique_constraint=True)
        plain = await stack.create_field(workspace, name=f"P {value_type}", subject_type="Story",
                                         value_type=value_type)
        assert (unique["unique_constraint"], plain["unique_constraint"]) == (True, False)
        [held] = await written(stack, workspace, item(unique, value, 1))
        await conflict(item(unique, value, 2))
        await conflict(item(unique, same, 2))
        [again] = await written(stack, workspace, item(unique, same, 1))  # its own value: fine
        assert (again["sequence"], again["value"]) == (2, held["value"]), (value_type, again)
        [two] = await written(stack, workspace, item(unique, other, 2))
        await conflict(item(unique, other, 1))
        # Other fields, unique or not, may hold the same value on other subjects.
        await written(stack, workspace, item(twin, value, 2), item(plain, value, 1), item(plain, same, 2))
        # Once its holder deletes it, another subject may take a value; once it replaces it, too.
        status, body, _ = await stack.request("DELETE", f"{VALUES}/{two['id']}", workspace)
        assert status == 204, body
        [took] = await written(stack, workspace, item(unique, other, 1))
        [three] = await written(stack, workspace, item(unique, same, 3))
        assert three["value"] == held["value"], (value_type, three)
        await conflict(item(unique, value, 4))
        rows = await db.fetch("SELECT subject_id, value FROM current_values WHERE custom_field_id = $1 "
                              "AND value_id IS NOT NULL ORDER BY subject_id", int(unique["id"]))
        assert [(r["subject_id"], r["value"]) for r in rows] == [("1", took["value"]), ("3", held["value"])], (
            value_type, rows)


async def test_unique_values_under_concurrency_and_in_bulk(stack: Stack, workspace: Workspace, db: Db) -> None:
    code = await stack.create_field(workspace, name="Code", subject_type="Story", value_type="string",
                                    unique_constraint=True)

    async def holders(value: str) -> list[str]:
        rows = await db.fetch("SELECT subject_id FROM current_values WHERE custom_field_id = $1 AND value = $2 "
                              "AND value_id IS NOT NULL", int(code["id"]), value)
        return [r["subject_id"] for r in rows]

    # 20 subjects race for one value (waiting for the outcome, then not): exactly one gets it.
    answers = await asyncio.gather(*(write(stack, workspace, item(code, "SAME", n)) for n in range(1, 21)))
    assert sorted(a[0] for a in answers) == [200] + [422] * 19, [a[:2] for a in answers]
    for status, body, _ in answers:
        if status != 200:
            refused(status, body, 422, "conflict")
    [winner] = [values_of(body)[0] for status, body, _ in answers if status == 200]
    assert await holders("SAME") == [str(winner["subject_id"])]
    answers = await asyncio.gather(*(write(stack, workspace, item(code, "ASYNC", n), headers=ASYNC)
                                     for n in range(1, 21)))
    outcomes = [await operation_outcome(stack, workspace, body["operation"]["id"]) for _, body, _ in answers]
    assert sorted(o["status"] for o in outcomes) == ["failed"] * 19 + ["succeeded"], outcomes
    assert all(o["http_status"] == 422 and o["errors"][0]["type"] == "conflict" for o in outcomes
               if o["status"] == "failed"), outcomes
    assert len(await holders("ASYNC")) == 1
    assert await db.fetchval("SELECT count(*) FROM value_versions WHERE custom_field_id = $1",
                             int(code["id"])) == 2

    # Different values at once: all succeed.
    answers = await asyncio.gather(*(write(stack, workspace, item(code, f"C{n}", n)) for n in range(21, 41)))
    assert [a[0] for a in answers] == [200] * 20, [a[:2] for a in answers if a[0] != 200]
    c21, c22 = (values_of(answers[n][1])[0] for n in (0, 1))

    # One request giving one value to two subjects, or a value another holds (by POST or PUT), is refused whole.
    before = await counts(db)
    for items in ([item(code, "DUP", 50), item(code, "DUP", 51)],
                  [item(code, "FRESH", 50), item(code, "C21", 51)],
                  [item(code, "C21", 21), item(code, "C22", 50)]):
        status, body, _ = await write(stack, workspace, *items)
        assert status == 422 and "conflict" in {e["type"] for e in assert_errors_shape(body)}, (items, body)
    for path, change in ((f"{VALUES}/{c22['id']}", {"custom_field_value": {"value": "C21"}}),
                         (VALUES, {"custom_field_values": [{"id": c22["id"], "value": "C22-new"},
                                                           {"id": c21["id"], "value": "C23"}]})):
        status, body, _ = await stack.request("PUT", path, workspace, json=change)
        refused(status, body, 422, "conflict")
    assert await counts(db) == before
    assert (await holders("C21"), await holders("C22")) == (["21"], ["22"])
    # A request may hand a value over once its holder took another, and repeat a subject's own value.
    moved = await written(stack, workspace, item(code, "C23-new", 23), item(code, "C23", 60), item(code, "C23", 60))
    assert [(v["subject_id"], v["value"]) for v in moved] == [(23, "C23-new"), (60, "C23"), (60, "C23")]
    assert (await holders("C23"), await holders("C23-new")) == (["60"], ["23"])


# --- required fields, defaults, external references ---------------------------------------------------


async def test_required_fields_refuse_blanks_and_deletes(stack: Stack, workspace: Workspace, db: Db) -> None:
    def required(value_type: str) -> Any:
        return stack.create_field(workspace, name=f"R {value_type}", subject_type="Story", value_type=value_type,
                                  required=True)

    text, flag, amount = await required("string"), await required("boolean"), await required("number")
    optional = await stack.create_field(workspace, name="Optional", subject_type="Story", value_type="string")
    assert (text["required"], optional["required"]) == (True, False)
    for bad in ("", "   ", "\t\n"):
        before = await counts(db)
        status, body, _ = await write(stack, workspace, item(text, bad))
        refused(status, body, 422, "validation")
        status, body, _ = await write(stack, workspace, item(optional, "fine", 8), item(text, bad, 8))
        refused(status, body, 422, "validation")
        assert await counts(db) == before
    values = await written(stack, workspace, item(text, " x "), item(flag, False), item(amount, 0),
                           item(optional, ""))
    assert [v["value"] for v in values] == [" x ", False, 0, ""]
    for value in values[:3]:
        for path in (f"{VALUES}/{value['id']}", f"{VALUES}?ids={value['id']}",
                     f"{VALUES}?ids={values[3]['id']},{value['id']}"):
            status, body, _ = await stack.request("DELETE", path, workspace)
            refused(status, body, 422, "validation")
    status, body, _ = await stack.request("PUT", f"{VALUES}/{values[0]['id']}", workspace,
                                          json={"custom_field_value": {"value": " "}})
    refused(status, body, 422, "validation")
    for value in values:
        status, body, _ = await stack.request("GET", f"{VALUES}/{value['id']}", workspace)
        assert status == 200 and values_of(body) == [value], body
    # The optional value survived the refused bulk deletes; it can go, and required values can change.
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{values[3]['id']}", workspace)
    assert status == 204, body
    [changed] = await written(stack, workspace, item(flag, True))
    assert changed["sequence"] == 2


async def test_default_values_and_external_references(stack: Stack, workspace: Workspace, db: Db) -> None:
    # spec, the default answered (None: the field is refused with 400)
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"value_type": "number", "default_value": 5}, 5),
        ({"value_type": "number", "default_value": 0, "required": True}, 0),
        ({"value_type": "number", "default_value": "5"}, None),
        ({"value_type": "boolean", "default_value": False, "required": True}, False),
        ({"value_type": "boolean", "default_value": "no"}, None),
        ({"value_type": "string", "default_value": "n/a", "required": True}, "n/a"),
        ({"value_type": "string", "default_value": "  "}, "  "),
        ({"value_type": "string", "default_value": "  ", "required": True}, None),
        ({"value_type": "string", "default_value": "", "required": True}, None),
        ({"value_type": "string", "default_value": 5}, None),
        ({"value_type": "date", "default_value": "2024-02-29"}, "2024-02-29"),
        ({"value_type": "date", "default_value": "2023-02-29"}, None),
        ({"value_type": "email", "default_value": "not an email"}, None),
        ({"value_type": "url", "default_value": "ftp://example.com"}, None),
        ({"value_type": "currency", "default_value": [10, "USD"]}, [10, "USD"]),
        ({"value_type": "currency", "default_value": [10, "XYZ"]}, None),
        ({"value_type": "single", "choices": ["a"], "default_value": "a"}, None),
        ({"value_type": "multi", "choices": ["a", "b"], "default_value": ["a"]}, None),
    ]
    created: dict[str, dict[str, Any]] = {}
    for spec, default in cases:
        body_spec = {"name": f"F{len(created)}", "subject_type": "Story", **spec}
        fields = await db.fetchval("SELECT count(*) FROM custom_fields")
        status, body, _ = await stack.request("POST", FIELDS, workspace, json={"custom_field": body_spec})
        if default is None:
            refused(status, body, 400, "validation")
            assert any("default_value" in (e["field"] or "") for e in body["errors"]), (spec, body)
            assert await db.fetchval("SELECT count(*) FROM custom_fields") == fields, spec
            continue
        assert status == 201, (spec, body)
        [field] = body["custom_fields"].values()
        answered = await field_of(stack, workspace, field["id"])
        assert (field["default_value"], answered["default_value"]) == (default, default), (spec, answered)
        assert type(answered["default_value"]) is type(default), (spec, answered)
        assert answered["required"] == spec.get("required", False)
        assert answered["external_reference"] == {"external_id": None, "external_source": None}
        created[f"{spec['value_type']}{'!' if spec.get('required') else ''}"] = field
    assert len(created) == 7

    async def patch(field: dict[str, Any], changes: dict[str, Any], status: int) -> dict[str, Any]:
        answer, body, _ = await stack.request("PATCH", f"{FIELDS}/{field['id']}", workspace,
                                              json={"custom_field": changes})
        if status == 400:
            refused(answer, body, 400, "validation")
        else:
            assert answer == status, (changes, body)
            assert body["custom_fields"][field["id"]] == await field_of(stack, workspace, field["id"])
        return await field_of(stack, workspace, field["id"])

    number, blank, choice = created["number"], created["string"], await stack.create_field(
        workspace, name="Choice", subject_type="Story", value_type="single", choices=["a"])
    # (field, changes, status, then (required, default_value))
    steps: list[tuple[dict[str, Any], dict[str, Any], int, tuple[bool, Any]]] = [
        (number, {"default_value": "seven", "name": "Not applied"}, 400, (False, 5)),
        (number, {"default_value": True}, 400, (False, 5)),
        (number, {"default_value": 7}, 200, (False, 7)),
        (number, {"name": "Renamed"}, 200, (False, 7)),  # no default_value sent: it stays
        (number, {"required": True}, 200, (True, 7)),
        (number, {"default_value": None}, 200, (True, None)),
        (blank, {"required": True}, 400, (False, "  ")),  # its default would be a blank of a required field
        (blank, {"required": True, "default_value": "ok"}, 200, (True, "ok")),
        (blank, {"default_value": " "}, 400, (True, "ok")),
        (blank, {"default_value": 3}, 400, (True, "ok")),
        (choice, {"default_value": int(choice["choices"][0]["id"])}, 400, (False, None)),
    ]
    for field, changes, status, (required, default) in steps:
        now = await patch(field, changes, status)
        assert (now["required"], now["default_value"]) == (required, default), (changes, now)
    assert (await field_of(stack, workspace, number["id"]))["name"] == "Renamed"

    # External references: stored, answered everywhere, changed by PATCH.
    jira = {"external_id": "CF-1", "external_source": "jira"}
    linked = await stack.create_field(workspace, name="Linked", subject_type="Story", value_type="string",
                                      external_reference=jira)
    assert linked["external_reference"] == jira
    assert (await field_of(stack, workspace, linked["id"]))["external_reference"] == jira
    linear = {"external_id": "LIN-9", "external_source": "linear"}
    for field in (linked, number):
        name = (await field_of(stack, workspace, field["id"]))["name"]
        now = await patch(field, {"external_reference": linear}, 200)
        assert now["external_reference"] == linear and now["name"] == name, now
    status, body, _ = await stack.request("GET", f"{FIELDS}?per_page=200", workspace)
    assert body["custom_fields"][linked["id"]]["external_reference"] == linear, body
    assert await db.fetchrow("SELECT external_id, external_source FROM custom_fields WHERE id = $1",
                             int(linked["id"])) == ("LIN-9", "linear")
