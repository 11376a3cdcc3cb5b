"""Writing values through the Kantata face: every value type, replace semantics, history, bulk, tenancy."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cfv_schemas.kantata import CustomFieldValueOut
from support import EventCollector, Stack, Workspace, add_users
from support.kantata import assert_errors_shape, counts, item, key_id, values_of, write

WORK_ITEM = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
OTHER_WORK_ITEM = "0b5a1c6e-7d8f-4a9b-8c1d-2e3f4a5b6c7d"

Choose = Callable[[list[int]], Any]  # from the field's choice ids to a value


@dataclass
class Case:
    """A field of one value type, a valid write (sent and as stored) and an invalid one."""

    spec: dict[str, Any]
    valid: Any | Choose
    stored: Any | Choose
    invalid: Any | Choose
    complaint: str
    subject_id: int | str = 7


def resolve(value: Any, choices: list[int]) -> Any:
    return value(choices) if callable(value) else value


CASES = {
    "string": Case({"value_type": "string"}, "hello, world", "hello, world", 12, "must be a string"),
    "string-too-long": Case({"value_type": "string"}, "x" * 10_000, "x" * 10_000, "x" * 10_001, "at most 10000"),
    "string-nul": Case({"value_type": "string"}, "tab\tok", "tab\tok", "nul\x00byte", "NUL"),
    "url": Case({"value_type": "url"}, "https://example.com/a?b=1#c", "https://example.com/a?b=1#c",
                "ftp://example.com/file", "http or https URL"),
    "email": Case({"value_type": "email"}, "Ann.Lee@Example.COM", "Ann.Lee@example.com", "ann at example",
                  "must be an email address"),
    "file": Case({"value_type": "file"}, "report-2024.pdf", "report-2024.pdf", "   ", "must name a file"),
    "date": Case({"value_type": "date"}, "2014-02-25", "2014-02-25", "2014-02-30", "real calendar date"),
    "date-format": Case({"value_type": "date"}, "2024-12-31", "2024-12-31", "25/02/2014", "YYYY-MM-DD"),
    "datetime": Case({"value_type": "datetime"}, "2014-02-25T10:30:00Z", "2014-02-25T10:30:00+00:00",
                     "tomorrow at noon", "ISO 8601"),
    "number": Case({"value_type": "number"}, 13.5, 13.5, "13", "must be a number"),
    "number-bool": Case({"value_type": "number"}, -7, -7, True, "must be a number"),
    "currency": Case({"value_type": "currency"}, [998, "USD"], [998, "USD"], [998, "XYZ"],
                     "not an ISO 4217 currency code"),
    "currency-shape": Case({"value_type": "currency"}, [12.25, "EUR"], [12.25, "EUR"], 998, "[amount"),
    "boolean": Case({"value_type": "boolean"}, False, False, "true", "must be true or false"),
    "single": Case({"value_type": "single", "choices": ["S", "M", "L"]}, lambda c: c[1], lambda c: [c[1]],
                   lambda c: [c[0], c[1]], "exactly one choice"),
    "multi": Case({"value_type": "multi", "choices": ["a", "b", "c"]}, lambda c: [c[2], c[0], c[2]],
                  lambda c: [c[2], c[0]], lambda c: [c[0], max(c) + 1000], "not a choice of this field"),
    "multi-empty": Case({"value_type": "multi", "choices": ["a"]}, lambda c: [c[0]], lambda c: [c[0]], [],
                        "at least one choice"),
    "relation-user": Case({"value_type": "relation", "relation_target": "user"}, 42, [42], [42, 43],
                          "exactly one target"),
    "relation-user-multi": Case({"value_type": "relation", "relation_target": "user", "relation_multi": True},
                                [5, 3, 5], [5, 3], ["5"], "positive integer ids"),
    "relation-work-item": Case({"value_type": "relation", "relation_target": "work_item", "relation_multi": True},
                               [WORK_ITEM.upper(), OTHER_WORK_ITEM], [WORK_ITEM, OTHER_WORK_ITEM], [17],
                               "UUIDs"),
    "work-item-subject": Case({"value_type": "string", "subject_type": "WorkItem"}, "on a work item",
                              "on a work item", None, "a value is required", subject_id=WORK_ITEM),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_value_type_valid_and_invalid_write(stack: Stack, workspace: Workspace, db: Any, name: str) -> None:
    case = CASES[name]
    await add_users(db, workspace.id, ids=(3, 5, 42, 43))  # user relations name users of the workspace
    spec = {"name": f"Field {name}", "subject_type": "Story", **case.spec}
    created = await stack.create_field(workspace, **spec)
    choices = [int(c["id"]) for c in created["choices"]]

    status, body, _ = await write(stack, workspace, item(created, resolve(case.invalid, choices), case.subject_id))
    assert status == 422, body
    [error] = assert_errors_shape(body)
    assert error["type"] == "validation" and error["field"] == "value"
    assert error["index"] == 0 and error["custom_field_id"] == int(created["id"])
    assert error["message"].startswith(f"Field {name}: ") and case.complaint in error["message"], error
    assert await counts(db) == (0, 0, 0)

    status, body, _ = await write(stack, workspace, item(created, resolve(case.valid, choices), case.subject_id))
    assert status == 200, body
    [value] = values_of(body)
    CustomFieldValueOut.model_validate(value)
    stored = resolve(case.stored, choices)
    assert value["value"] == stored
    assert value["value_type"] == created["value_type"]
    assert value["custom_field_id"] == created["id"] and value["custom_field_name"] == f"Field {name}"
    assert value["subject_type"] == created["subject_type"] and value["subject_id"] == case.subject_id
    assert value["sequence"] == 1
    row = await db.fetchrow("SELECT * FROM current_values")
    assert row["value"] == stored and row["value_id"] == int(value["id"])


async def test_answer_is_kantata_format(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, headers = await write(stack, workspace, item(points, 3, subject_id="12"))
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"count", "meta", "results", "custom_field_values"}
    assert body["count"] == 1
    assert body["meta"] == {"count": 1, "page_count": 1, "page_number": 1, "page_size": 1}
    [ref] = body["results"]
    assert ref["key"] == "custom_field_values" and isinstance(ref["id"], str)
    value = body["custom_field_values"][ref["id"]]
    assert value["id"] == ref["id"]
    assert value["subject_id"] == 12  # a Story id given as text answers as the integer it is
    assert value["setter"] == f"key:{await key_id(db, workspace)}"
    uuid.UUID(value["operation_id"])
    assert value["created_at"] == value["updated_at"]
    stored = await db.fetchrow("SELECT * FROM value_versions WHERE id = $1", int(value["id"]))
    assert stored["subject_id"] == "12" and stored["operation_id"] == uuid.UUID(value["operation_id"])
    assert stored["setter"] == value["setter"]


async def test_every_write_makes_a_new_value_and_the_sequence_grows(stack: Stack, workspace: Workspace,
                                                                   db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    answers = []
    for n in (1, 2, 2):  # writing the same value again is a change too
        status, body, _ = await write(stack, workspace, item(points, n))
        assert status == 200, body
        answers.extend(values_of(body))
    assert [a["sequence"] for a in answers] == [1, 2, 3]
    ids = [int(a["id"]) for a in answers]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert len({a["operation_id"] for a in answers}) == 3

    history = await db.fetch("SELECT id, seq, value FROM value_versions ORDER BY seq")
    assert [(r["id"], r["seq"], r["value"]) for r in history] == list(zip(ids, [1, 2, 3], [1, 2, 2],
                                                                                        strict=True))
    current = await db.fetchrow("SELECT * FROM current_values")
    assert (current["seq"], current["value_id"], current["value"]) == (3, ids[-1], 2)

    # Another subject of the same field has a sequence of its own.
    status, body, _ = await write(stack, workspace, item(points, 5, subject_id=8))
    assert values_of(body)[0]["sequence"] == 1


async def test_multi_choice_write_replaces_the_whole_set(stack: Stack, workspace: Workspace, db: Any) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    red, green, blue = (int(c["id"]) for c in colour["choices"])
    status, body, _ = await write(stack, workspace, item(colour, [red, green]))
    assert status == 200, body
    first = values_of(body)[0]
    status, body, _ = await write(stack, workspace, item(colour, [blue]))
    assert status == 200, body
    second = values_of(body)[0]

    assert first["value"] == [red, green]
    assert second["value"] == [blue]  # never [red, green, blue]
    assert second["id"] != first["id"] and second["sequence"] == 2
    current = await db.fetchrow("SELECT value, value_id, seq FROM current_values")
    assert current["value"] == [blue] and current["value_id"] == int(second["id"])
    history = await db.fetch("SELECT id, value FROM value_versions ORDER BY seq")
    assert [(r["id"], r["value"]) for r in history] == [
        (int(first["id"]), [red, green]), (int(second["id"]), [blue])]


async def test_bulk_applies_every_item_in_order(stack: Stack, workspace: Workspace, db: Any,
                                                events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    title = await stack.create_field(workspace, name="Title", subject_type="Story", value_type="string")
    items = [item(points, n, subject_id=n) for n in range(1, 99)]
    items += [item(title, "first", subject_id=1), item(title, "second", subject_id=1)]
    status, body, _ = await write(stack, workspace, *items)
    assert status == 200, body
    assert body["count"] == 100 and body["meta"]["count"] == 100 and len(body["results"]) == 100
    values = values_of(body)
    assert [(v["subject_id"], v["value"]) for v in values[:98]] == [(n, n) for n in range(1, 99)]
    assert [(v["value"], v["sequence"]) for v in values[98:]] == [("first", 1), ("second", 2)]
    assert len({v["operation_id"] for v in values}) == 1
    assert await counts(db) == (100, 99, 100)
    last = await db.fetchval("SELECT value FROM current_values WHERE custom_field_id = $1", int(title["id"]))
    assert last == "second"
    await events.wait_for_count(100)


async def test_one_value_under_the_plural_key_is_a_bulk_of_one(stack: Stack, workspace: Workspace) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 4), bulk=True)
    assert status == 200, body
    assert [v["value"] for v in values_of(body)] == [4]


async def test_bulk_is_all_or_nothing_and_lists_every_bad_item(stack: Stack, workspace: Workspace, db: Any,
                                                               other_workspace: Workspace,
                                                               events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    when = await stack.create_field(workspace, name="When", subject_type="Story", value_type="date")
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="number")
    items = [
        item(points, 1),                              # 0 fine
        item(points, "two"),                          # 1 bad value
        item(when, "2024-01-01"),                     # 2 fine
        item(when, "2024-13-01"),                     # 3 bad value
        item(theirs, 5),                              # 4 another workspace's field
        item(points, 6, subject_type="User"),         # 5 wrong subject type
        item(points, 7, subject_id=0),                # 6 bad subject id
        item(points, 8),                              # 7 fine
    ]
    status, body, _ = await write(stack, workspace, *items)
    assert status == 422, body
    errors = assert_errors_shape(body)
    found = {e["index"]: (e["type"], e["field"], e["custom_field_id"]) for e in errors}
    assert found == {
        1: ("validation", "value", int(points["id"])),
        3: ("validation", "value", int(when["id"])),
        4: ("not_found", "custom_field_id", int(theirs["id"])),
        5: ("validation", "subject_type", int(points["id"])),
        6: ("validation", "subject_id", int(points["id"])),
    }
    assert len(errors) == 5
    assert "When: " in next(e["message"] for e in errors if e["index"] == 3)
    assert await counts(db) == (0, 0, 0)

    # Nothing was announced either: the next event is the next write's (the relay keeps outbox order).
    status, body, _ = await write(stack, workspace, item(points, 9))
    assert status == 200, body
    [event] = await events.wait_for_count(1)
    assert event["data"]["after"]["value"] == 9 and event["data"]["sequence"] == 1
    assert len(events.messages) == 1


async def test_bulk_of_101_items_is_400(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, *[item(points, n, subject_id=n) for n in range(1, 102)])
    assert status == 400, body
    [error] = assert_errors_shape(body)
    assert error["type"] == "validation" and error["field"] == "custom_field_values"
    assert "100" in error["message"]
    assert await counts(db) == (0, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM operations") == 0  # refused before it became a command


async def test_empty_bulk_is_400(stack: Stack, workspace: Workspace) -> None:
    status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace,
                                          json={"custom_field_values": []})
    assert status == 400
    assert assert_errors_shape(body)[0]["field"] == "custom_field_values"


async def test_all_unknown_fields_is_404_listing_each(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    unknown = [int(points["id"]) + 100, int(points["id"]) + 200]
    items = [{"subject_type": "Story", "subject_id": 1, "custom_field_id": f, "value": 1} for f in unknown]
    status, body, _ = await write(stack, workspace, *items)
    assert status == 404, body
    errors = assert_errors_shape(body)
    assert [(e["index"], e["type"], e["field"], e["custom_field_id"]) for e in errors] == [
        (0, "not_found", "custom_field_id", unknown[0]), (1, "not_found", "custom_field_id", unknown[1])]
    assert f"custom field {unknown[0]} not found" == errors[0]["message"]
    assert await counts(db) == (0, 0, 0)


async def test_unknown_field_beside_valid_ones_refuses_the_whole_bulk(stack: Stack, workspace: Workspace,
                                                                      db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    missing = {"subject_type": "Story", "subject_id": 1, "custom_field_id": int(points["id"]) + 5, "value": 1}
    status, body, _ = await write(stack, workspace, item(points, 1), missing)
    # Everything refused was unknown: 404 (an unknown field beside an invalid value is 422, tested above).
    assert status == 404, body
    [error] = assert_errors_shape(body)
    assert (error["index"], error["type"], error["custom_field_id"]) == (1, "not_found", missing["custom_field_id"])
    assert await counts(db) == (0, 0, 0)


async def test_another_workspaces_field_is_404_like_a_missing_one(stack: Stack, workspace: Workspace,
                                                                 other_workspace: Workspace, db: Any) -> None:
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="number")
    missing_id = int(theirs["id"]) + 1000
    status, body, _ = await write(stack, workspace, item(theirs, 1))
    assert status == 404, body  # never 403
    [error] = assert_errors_shape(body)
    status2, body2, _ = await write(stack, workspace, {**item(theirs, 1), "custom_field_id": missing_id})
    assert status2 == 404
    [missing] = body2["errors"]
    assert error == {**missing, "custom_field_id": int(theirs["id"]),
                     "message": missing["message"].replace(str(missing_id), theirs["id"])}
    assert await counts(db) == (0, 0, 0)
    # The owner can still write it.
    status, body, _ = await write(stack, other_workspace, item(theirs, 1))
    assert status == 200, body


async def test_wrong_subject_type_is_422(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    for subject_type, complaint in (("User", "applies to Story, not User"), ("WorkItem", "not WorkItem"),
                                    ("Planet", "subject_type must be one of"), ("story", "must be one of")):
        status, body, _ = await write(stack, workspace, item(points, 1, 7, subject_type))
        assert status == 422, (subject_type, body)
        [error] = assert_errors_shape(body)
        assert (error["type"], error["field"], error["index"]) == ("validation", "subject_type", 0)
        assert error["custom_field_id"] == int(points["id"])
        assert complaint in error["message"], error
    assert await counts(db) == (0, 0, 0)


async def test_bad_subject_id_is_422(stack: Stack, workspace: Workspace, db: Any) -> None:
    story = await stack.create_field(workspace, name="Notes", subject_type="Story", value_type="string")
    work_item = await stack.create_field(workspace, name="Notes", subject_type="WorkItem", value_type="string")
    for created, subject_id in ((story, -3), (story, 0), (story, "abc"), (story, 2**63), (story, "1.5"),
                                (work_item, 12), (work_item, "nope")):
        status, body, _ = await write(stack, workspace, item(created, "x", subject_id))
        assert status == 422, (subject_id, body)
        [error] = assert_errors_shape(body)
        assert (error["type"], error["field"]) == ("validation", "subject_id"), error
    assert await counts(db) == (0, 0, 0)


MALFORMED = [
    {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": 1}},
    {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": "one", "value": 1}},
    {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": 1, "value": 1,
                            "colour": "red"}},
    {"custom_field_value": {"subject_id": 1, "custom_field_id": 1, "value": 1}},
    {"custom_field_value": [1]},
    {"custom_field_values": {"subject_type": "Story"}},
    {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": 1, "value": 1},
     "extra": True},
    # JSON booleans are not ids (they must not silently become subject 1 or field 1).
    {"custom_field_value": {"subject_type": "Story", "subject_id": True, "custom_field_id": 1, "value": 1}},
    {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": True, "value": 1}},
]


async def test_malformed_items_are_400(stack: Stack, workspace: Workspace, db: Any) -> None:
    await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")  # id 1
    for body in MALFORMED:
        status, answer, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace, json=body)
        assert status == 400, (body, answer)
        assert all(e["type"] == "validation" for e in assert_errors_shape(answer)), answer
    assert await counts(db) == (0, 0, 0)
    assert await db.fetchval("SELECT count(*) FROM operations") == 0


async def test_field_ids_beyond_bigint_are_unknown_fields(stack: Stack, workspace: Workspace, db: Any) -> None:
    template = b'{"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": %d, "value": 1}}'
    for field_id in (2**63, 2**64 - 1):  # Postgres cannot even be asked about these
        status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace,
                                              data=template % field_id, headers={"Content-Type": "application/json"})
        assert status == 404, body
        [error] = assert_errors_shape(body)
        assert (error["type"], error["custom_field_id"]) == ("not_found", field_id)
    for field_id in (10**20, -(2**63) - 1):  # not even 64-bit integers: refused as malformed
        status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace,
                                              data=template % field_id, headers={"Content-Type": "application/json"})
        assert status == 400, body
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 1))
    assert status == 200, body
    assert await db.fetchval("SELECT count(*) FROM operations WHERE status = 'failed'") == 2


async def test_null_value_is_a_validation_error_of_that_item(stack: Stack, workspace: Workspace, db: Any) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 1), item(points, None, subject_id=8))
    assert status == 422, body
    [error] = assert_errors_shape(body)
    assert (error["type"], error["field"], error["index"]) == ("validation", "value", 1)
    assert "a value is required" in error["message"]
    assert await counts(db) == (0, 0, 0)


async def test_a_bad_request_never_fails_concurrent_writes_of_its_workspace(stack: Stack, workspace: Workspace,
                                                                            db: Any) -> None:
    # Concurrent writes of one workspace may travel to the worker in one message: a refused one must not
    # take the others down with it.
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    title = await stack.create_field(workspace, name="Title", subject_type="Story", value_type="string")
    bad = {10: item(points, None, subject_id=10), 15: {**item(points, 1), "custom_field_id": 2**63 + 1},
           20: item(title, "nul\x00", subject_id=20)}
    requests = [write(stack, workspace, bad.get(n, item(points, n, subject_id=n))) for n in range(1, 31)]
    answers = await asyncio.gather(*requests)
    for n, (status, body, _) in enumerate(answers, start=1):
        if n == 10:
            assert status == 422 and "a value is required" in body["errors"][0]["message"], body
        elif n == 15:
            assert status == 404 and body["errors"][0]["type"] == "not_found", body
        elif n == 20:
            assert status == 422 and body["errors"][0]["message"] == "Title: must not contain NUL characters", body
        else:
            assert status == 200, (n, body)
            assert values_of(body)[0]["value"] == n
    assert await counts(db) == (27, 27, 27)


async def test_concurrent_writes_to_one_value_get_gapless_sequences(stack: Stack, workspace: Workspace, db: Any,
                                                                    events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    answers = await asyncio.gather(*(write(stack, workspace, item(points, n)) for n in range(20)))
    values = [values_of(body)[0] for status, body, _ in answers if status == 200]
    assert len(values) == 20
    by_sequence = sorted(values, key=lambda v: v["sequence"])
    assert [v["sequence"] for v in by_sequence] == list(range(1, 21))
    assert [int(v["id"]) for v in by_sequence] == sorted(int(v["id"]) for v in values)
    current = await db.fetchrow("SELECT seq, value_id, value FROM current_values")
    assert (current["seq"], current["value_id"], current["value"]) == (
        20, int(by_sequence[-1]["id"]), by_sequence[-1]["value"])
    assert await db.fetchval("SELECT count(*) FROM value_versions") == 20

    received = await events.wait_for_count(20)
    assert [e["data"]["sequence"] for e in received] == list(range(1, 21))  # published in order
    for before, after in itertools.pairwise(received):
        assert after["data"]["before"] == before["data"]["after"]  # each change starts where the last ended
