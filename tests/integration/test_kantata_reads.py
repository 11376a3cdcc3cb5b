"""Reading, updating and deleting values by id on the Kantata face, end to end.

Listing (filters, order, pages, includes), one value with its ETag, history, updates and deletes (one and in
bulk, all or nothing), optimistic concurrency (If-Match, expected_version), multi choice edits (also from
many clients at once), origins and external references, and tenancy.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from cfv_schemas.kantata import CustomFieldValueOut
from support import EventCollector, Stack, Workspace
from support.kantata import FIELDS, VALUES, assert_errors_shape, counts, item, key_id, values_of, write

WORK_ITEM = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
HISTORY = f"{VALUES}/history"
BASE_KEYS = {"count", "meta", "results", "custom_field_values"}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# --- helpers ------------------------------------------------------------------------------------------


def header(headers: dict[str, str], name: str) -> str | None:
    """A response header, whatever its case."""
    return {k.lower(): v for k, v in headers.items()}.get(name.lower())


async def get(stack: Stack, workspace: Workspace, path: str = VALUES, **params: Any
              ) -> tuple[int, Any, dict[str, str]]:
    """GET ``path`` with ``params`` properly encoded (a ``+`` of an offset must not become a space)."""
    return await stack.request("GET", path + (f"?{urlencode(params)}" if params else ""), workspace)


def listed(body: dict[str, Any]) -> list[str]:
    """The ids of a listing's values, in the order answered."""
    return [v["id"] for v in values_of(body)]


async def written(stack: Stack, workspace: Workspace, *items: dict[str, Any], bulk: bool | None = None
                  ) -> list[dict[str, Any]]:
    """POST values that must be accepted; return them as answered."""
    status, body, _ = await write(stack, workspace, *items, bulk=bulk)
    assert status == 200, body
    return values_of(body)


async def put_one(stack: Stack, workspace: Workspace, value_id: str, value: Any,
                  headers: dict[str, str] | None = None, **options: Any) -> tuple[int, Any, dict[str, str]]:
    """PUT /custom_field_values/{id}."""
    return await stack.request("PUT", f"{VALUES}/{value_id}", workspace,
                               json={"custom_field_value": {"value": value, **options}}, headers=headers)


async def put_many(stack: Stack, workspace: Workspace, *updates: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    """Bulk PUT /custom_field_values."""
    return await stack.request("PUT", VALUES, workspace, json={"custom_field_values": list(updates)})


async def history(stack: Stack, workspace: Workspace, field: dict[str, Any], subject_id: int | str = 7
                  ) -> tuple[int, Any]:
    status, body, _ = await get(stack, workspace, HISTORY, subject_type=field["subject_type"],
                                subject_id=subject_id, custom_field_id=field["id"])
    return status, body


def versions_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert all(ref["key"] == "custom_field_value_versions" for ref in body["results"]), body
    return [body["custom_field_value_versions"][ref["id"]] for ref in body["results"]]


def error_ids(body: Any) -> list[str]:
    """The ids an error answer names, sorted."""
    return sorted(e["id"] for e in assert_errors_shape(body))


def choice_ids(field: dict[str, Any]) -> list[int]:
    return [int(c["id"]) for c in field["choices"]]


def is_value(value: dict[str, Any]) -> None:
    """A value answered in full Kantata form."""
    CustomFieldValueOut.model_validate(value)
    assert set(value) == set(CustomFieldValueOut.model_fields), value


# --- listing ------------------------------------------------------------------------------------------

# Query parameters (subject_type Story unless given; "{name}" is the id of that field) and the values
# listed, in order. Updated at: v2 12:01, v4 12:02, v1 and v3 12:03 (a tie, broken by value id); value ids
# v1 < v2 < v3 < v4.
ASC = ["v2", "v4", "v1", "v3"]
FILTERS: list[tuple[dict[str, str], list[str]]] = [
    ({}, ASC),
    ({"order": "updated_at:asc"}, ASC),
    ({"order": "updated_at:desc"}, ASC[::-1]),
    ({"order": "created_at:asc"}, ASC),
    ({"order": "created_at:desc"}, ASC[::-1]),
    ({"order": "id:asc"}, ["v1", "v2", "v3", "v4"]),
    ({"order": "id:desc"}, ["v4", "v3", "v2", "v1"]),
    ({"with_subject_id": "1"}, ["v1", "v3"]),
    ({"with_subject_id": "3,1"}, ["v4", "v1", "v3"]),
    ({"with_subject_id": "1,3", "order": "id:desc"}, ["v4", "v3", "v1"]),
    ({"with_subject_id": "99"}, []),
    ({"with_custom_field_id": "{colour}"}, ["v4", "v3"]),
    ({"with_custom_field_id": "{size},{colour}"}, ASC),
    ({"with_custom_field_id": "{notes}"}, []),  # a deleted field's values are not values
    ({"with_custom_field_id": "{foreign}"}, []),  # another workspace's field
    ({"with_custom_field_id": "{effort}"}, []),  # an Estimate field: no Story values
    ({"with_subject_id": "1", "with_custom_field_id": "{size}"}, ["v1"]),
    ({"with_subject_id": "3", "with_custom_field_id": "{size}"}, []),  # deleted
    ({"updated_after": "2024-05-01T12:01:00Z"}, ["v4", "v1", "v3"]),  # exclusive
    ({"updated_after": "2024-05-01T12:01:00+00:00"}, ["v4", "v1", "v3"]),
    ({"updated_after": "2024-05-01T14:01:00+02:00"}, ["v4", "v1", "v3"]),  # the same instant
    ({"updated_after": "2024-05-01T12:00:59.999999Z"}, ASC),
    ({"updated_after": "2024-05-01T12:03:00Z"}, []),
    ({"updated_before": "2024-05-01T12:03:00Z"}, ["v2", "v4"]),  # exclusive
    ({"updated_before": "2024-05-01T12:03:00.000001Z"}, ASC),
    ({"updated_before": "2024-05-01T12:01:00Z"}, []),
    ({"updated_after": "2024-05-01T12:01:00Z", "updated_before": "2024-05-01T12:03:00Z"}, ["v4"]),
    ({"updated_after": "2024-05-01T12:01:00Z", "order": "id:desc"}, ["v4", "v3", "v1"]),
    ({"subject_type": "Estimate"}, ["est"]),
    ({"subject_type": "WorkItem"}, ["wi"]),
    ({"subject_type": "WorkItem", "with_subject_id": WORK_ITEM.upper()}, ["wi"]),
    ({"subject_type": "User"}, []),
]

BAD_LISTINGS: list[dict[str, str]] = [
    {},
    {"subject_type": ""},
    {"subject_type": "story"},
    {"subject_type": "Project"},
    {"subject_type": "Story", "with_subject_id": "abc"},
    {"subject_type": "Story", "with_subject_id": "1,,2"},
    {"subject_type": "WorkItem", "with_subject_id": "12"},
    {"subject_type": "Story", "with_custom_field_id": "size"},
    {"subject_type": "Story", "with_custom_field_id": "1;2"},
    {"subject_type": "Story", "updated_after": "yesterday"},
    {"subject_type": "Story", "updated_before": "2024-13-01T00:00:00Z"},
    {"subject_type": "Story", "order": "name:asc"},
    {"subject_type": "Story", "order": "id:up"},
    {"subject_type": "Story", "include": "owner"},
    {"subject_type": "Story", "include": "custom_field,bogus"},
    {"subject_type": "Story", "per_page": "201"},
    {"subject_type": "Story", "per_page": "0"},
    {"subject_type": "Story", "per_page": "ten"},
    {"subject_type": "Story", "page": "0"},
    {"subject_type": "Story", "page": "-1"},
]


async def test_list_filters_order_includes_and_bad_queries(stack: Stack, workspace: Workspace,
                                                           other_workspace: Workspace, db: Any) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue", "teal"])
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    notes = await stack.create_field(workspace, name="Notes", subject_type="Story", value_type="string")
    effort = await stack.create_field(workspace, name="Effort", subject_type="Estimate", value_type="number")
    title = await stack.create_field(workspace, name="Title", subject_type="WorkItem", value_type="string")
    foreign = await stack.create_field(other_workspace, name="Size", subject_type="Story", value_type="string")
    red, green, blue, _ = choice_ids(colour)
    answered = await written(stack, workspace, item(size, "S", 1), item(size, "M", 2), item(colour, [red, blue], 1),
                             item(colour, [green], 3), item(notes, "goes with its field", 1), item(size, "L", 3),
                             item(effort, 8, 5), item(title, "on a work item", WORK_ITEM))
    names = ["v1", "v2", "v3", "v4", "noted", "deleted", "est", "wi"]
    ids = {name: v["id"] for name, v in zip(names, answered, strict=True)}
    await written(stack, other_workspace, item(foreign, "XL", 1))
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{ids['deleted']}", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{notes['id']}", workspace)
    assert status == 204, body
    for name, minutes in (("v1", 3), ("v2", 1), ("v3", 3), ("v4", 2)):
        await db.execute("UPDATE current_values SET updated_at = $2 WHERE value_id = $1", int(ids[name]),
                         T0 + timedelta(minutes=minutes))
    name_of = {value_id: name for name, value_id in ids.items()}
    field_ids = {"colour": colour["id"], "size": size["id"], "notes": notes["id"], "foreign": foreign["id"],
                 "effort": effort["id"]}

    for params, expected in FILTERS:
        query = {"subject_type": "Story", **{k: v.format(**field_ids) for k, v in params.items()}}
        status, body, _ = await get(stack, workspace, **query)
        assert status == 200, (query, body)
        assert [name_of.get(i, i) for i in listed(body)] == expected, query
        assert body["count"] == body["meta"]["count"] == len(expected), (query, body)
        assert set(body) == BASE_KEYS, (query, body)

    # The values themselves, as answered; times are the values' (here the ones arranged above).
    status, body, _ = await get(stack, workspace, subject_type="Story", order="id:asc")
    assert status == 200, body
    v1, v2, v3, v4 = values_of(body)
    for value in (v1, v2, v3, v4):
        is_value(value)
    assert (v1["subject_id"], v1["custom_field_id"], v1["value"]) == (1, size["id"], "S")
    assert (v3["subject_id"], v3["custom_field_id"], v3["value"], v3["value_type"]) == (
        1, colour["id"], [red, blue], "multi")
    assert v3["custom_field_name"] == "Colour" and v3["sequence"] == 1
    assert v3["setter"] == f"key:{await key_id(db, workspace)}"
    assert datetime.fromisoformat(v2["updated_at"]) == T0 + timedelta(minutes=1)
    assert datetime.fromisoformat(v2["created_at"]) == T0 + timedelta(minutes=1)
    [posted_v3] = [v for v in answered if v["id"] == v3["id"]]
    assert {k: v for k, v in v3.items() if k not in ("created_at", "updated_at")} == {
        k: v for k, v in posted_v3.items() if k not in ("created_at", "updated_at")}

    # Includes: every one asked for, filled from the values answered (and only from them).
    setter = f"key:{await key_id(db, workspace)}"
    status, body, _ = await get(stack, workspace, subject_type="Story",
                                include="custom_field,selected_choices,setter,subject")
    assert status == 200, body
    assert set(body) == BASE_KEYS | {"custom_fields", "custom_field_choices", "users", "stories"}, body
    assert set(body["custom_fields"]) == {colour["id"], size["id"]}
    assert body["custom_fields"][colour["id"]]["name"] == "Colour"
    assert [c["id"] for c in body["custom_fields"][colour["id"]]["choices"]] == [c["id"] for c in colour["choices"]]
    assert set(body["custom_field_choices"]) == {str(red), str(green), str(blue)}
    assert body["custom_field_choices"][str(green)]["label"] == "green"
    assert body["custom_field_choices"][str(green)]["custom_field_id"] == colour["id"]
    assert body["custom_field_choices"][str(green)]["id"] == str(green)
    assert body["users"] == {setter: {"id": setter, "kind": "api_key", "user_id": await owner_id(db, workspace),
                                      "user_kind": "service", "name": "owner"}}
    assert body["stories"] == {s: {"id": s, "type": "Story"} for s in ("1", "2", "3")}

    includes: list[tuple[dict[str, str], str, set[str]]] = [
        ({"with_subject_id": "1", "include": "selected_choices"}, "custom_field_choices", {str(red), str(blue)}),
        ({"with_custom_field_id": size["id"], "include": "selected_choices"}, "custom_field_choices", set()),
        ({"with_custom_field_id": size["id"], "include": "custom_field"}, "custom_fields", {size["id"]}),
        ({"per_page": "1", "include": "subject"}, "stories", {"2"}),  # v2 comes first, on story 2
        ({"with_subject_id": "3", "include": "subject"}, "stories", {"3"}),
        ({"subject_type": "Estimate", "include": "subject"}, "estimates", {"5"}),
        ({"subject_type": "Estimate", "include": "custom_field"}, "custom_fields", {effort["id"]}),
        ({"subject_type": "WorkItem", "include": "subject"}, "work_items", {WORK_ITEM}),
        ({"subject_type": "WorkItem", "include": "setter"}, "users", {setter}),
    ]
    for params, key, expected_ids in includes:
        status, body, _ = await get(stack, workspace, **{"subject_type": "Story", **params})
        assert status == 200, (params, body)
        assert set(body) == BASE_KEYS | {key}, (params, body)
        assert set(body[key]) == expected_ids, (params, body)
    status, body, _ = await get(stack, workspace, subject_type="WorkItem", include="subject")
    assert body["work_items"][WORK_ITEM] == {"id": WORK_ITEM, "type": "WorkItem"}

    for params in BAD_LISTINGS:
        status, body, _ = await get(stack, workspace, **params)
        assert status == 400, (params, body)
        assert all(e["type"] == "validation" for e in assert_errors_shape(body)), body


async def test_list_pages(stack: Stack, workspace: Workspace) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    all_ids: list[str] = []
    for first, last in ((1, 100), (101, 200), (201, 205)):
        answered = await written(stack, workspace, *(item(size, f"s{n}", n) for n in range(first, last + 1)),
                                 bulk=True)
        all_ids += [v["id"] for v in answered]
    assert all_ids == sorted(all_ids, key=int)

    # (query, the slice of all_ids listed, meta as (count, page_count, page_number, page_size))
    pages: list[tuple[dict[str, str], list[str], tuple[int, int, int, int]]] = [
        ({}, all_ids[:20], (205, 11, 1, 20)),
        ({"page": "11"}, all_ids[200:], (205, 11, 11, 20)),
        ({"page": "12"}, [], (205, 11, 12, 20)),
        ({"per_page": "200"}, all_ids[:200], (205, 2, 1, 200)),
        ({"per_page": "200", "page": "2"}, all_ids[200:], (205, 2, 2, 200)),
        ({"per_page": "200", "page": "3"}, [], (205, 2, 3, 200)),
        ({"per_page": "1"}, all_ids[:1], (205, 205, 1, 1)),
        ({"per_page": "1", "page": "205"}, all_ids[-1:], (205, 205, 205, 1)),
        ({"per_page": "1", "page": "206"}, [], (205, 205, 206, 1)),
        ({"per_page": "200", "page": "2", "order": "id:desc"}, all_ids[4::-1], (205, 2, 2, 200)),
        ({"per_page": "3", "page": "2", "order": "updated_at:desc"}, all_ids[-4:-7:-1], (205, 69, 2, 3)),
        ({"per_page": "2", "page": "2", "with_subject_id": "1,2,3"}, all_ids[2:3], (3, 2, 2, 2)),
        ({"per_page": "2", "page": "3", "with_subject_id": "1,2,3"}, [], (3, 2, 3, 2)),
    ]
    for params, expected, meta in pages:
        status, body, _ = await get(stack, workspace, subject_type="Story", **params)
        assert status == 200, (params, body)
        assert listed(body) == expected, params
        assert body["count"] == meta[0], (params, body["meta"])
        assert (body["meta"]["count"], body["meta"]["page_count"], body["meta"]["page_number"],
                body["meta"]["page_size"]) == meta, params

    walked: list[str] = []
    for page in range(1, 6):  # every page of 50, in order: no value twice, none left out
        status, body, _ = await get(stack, workspace, subject_type="Story", per_page="50", page=str(page))
        assert status == 200 and body["meta"]["page_count"] == 5, body["meta"]
        walked += listed(body)
    assert walked == all_ids

    for per_page in ("201", "1000", "0", "-5"):
        status, body, _ = await get(stack, workspace, subject_type="Story", per_page=per_page)
        assert status == 400, (per_page, body)


# --- one value ----------------------------------------------------------------------------------------


async def test_get_one_value_with_etag_and_includes(stack: Stack, workspace: Workspace, db: Any) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    effort = await stack.create_field(workspace, name="Effort", subject_type="Estimate", value_type="number")
    red, green, blue = choice_ids(colour)
    first, sized, estimate = await written(stack, workspace, item(colour, [blue, red]), item(size, "S"),
                                           item(effort, 3, 5))

    status, body, headers = await get(stack, workspace, f"{VALUES}/{first['id']}")
    assert status == 200, body
    assert header(headers, "ETag") == '"1"'
    assert set(body) == BASE_KEYS and body["count"] == 1
    assert values_of(body) == [first]
    is_value(first)

    setter = f"key:{await key_id(db, workspace)}"
    status, body, headers = await get(stack, workspace, f"{VALUES}/{first['id']}",
                                      include="custom_field,selected_choices,setter,subject")
    assert status == 200 and header(headers, "ETag") == '"1"', body
    assert set(body) == BASE_KEYS | {"custom_fields", "custom_field_choices", "users", "stories"}, body
    assert set(body["custom_fields"]) == {colour["id"]}
    assert set(body["custom_field_choices"]) == {str(blue), str(red)}
    assert body["users"] == {setter: {"id": setter, "kind": "api_key", "user_id": await owner_id(db, workspace),
                                      "user_kind": "service", "name": "owner"}}
    assert body["stories"] == {"7": {"id": "7", "type": "Story"}}
    status, body, _ = await get(stack, workspace, f"{VALUES}/{estimate['id']}", include="subject")
    assert status == 200 and body["estimates"] == {"5": {"id": "5", "type": "Estimate"}}, body
    status, body, _ = await get(stack, workspace, f"{VALUES}/{first['id']}", include="owner")
    assert status == 400, body

    [second] = await written(stack, workspace, item(colour, [green]))
    assert second["id"] != first["id"] and second["sequence"] == 2
    status, body, headers = await get(stack, workspace, f"{VALUES}/{second['id']}")
    assert status == 200 and header(headers, "ETag") == '"2"', body
    assert values_of(body) == [second]

    status, body, _ = await stack.request("DELETE", f"{VALUES}/{sized['id']}", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{effort['id']}", workspace)
    assert status == 204, body
    # a replaced value, a deleted one, a deleted field's, one never written
    for gone in (first["id"], sized["id"], estimate["id"], "999999", "999999999999999999"):
        status, body, _ = await get(stack, workspace, f"{VALUES}/{gone}")
        assert status == 404, (gone, body)
        assert [e["type"] for e in assert_errors_shape(body)] == ["not_found"], body


async def test_update_one_value(stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    jira = {"external_id": "J-1", "external_source": "jira"}
    [first] = await written(stack, workspace, {**item(size, "S"), "origin": "jira", "external_reference": jira})
    assert (first["origin"], first["external_reference"]) == ("jira", jira)

    sheet = {"external_id": "row-9", "external_source": "sheet"}
    status, body, headers = await put_one(stack, workspace, first["id"], "M", headers={"If-Match": '"1"'},
                                          origin="sync", external_reference=sheet)
    assert status == 200, body
    [second] = values_of(body)
    is_value(second)
    assert int(second["id"]) > int(first["id"]) and header(headers, "ETag") == '"2"'
    assert (second["value"], second["sequence"], second["origin"], second["external_reference"]) == (
        "M", 2, "sync", sheet)
    assert (second["subject_type"], second["subject_id"], second["custom_field_id"]) == ("Story", 7, size["id"])
    status, body, headers = await get(stack, workspace, f"{VALUES}/{second['id']}")
    assert status == 200 and values_of(body) == [second] and header(headers, "ETag") == '"2"', body
    status, body, _ = await get(stack, workspace, f"{VALUES}/{first['id']}")
    assert status == 404, body

    before = await counts(db)
    refusals: list[tuple[str, Any, dict[str, str], dict[str, Any], int]] = [
        (second["id"], 12, {}, {}, 422),  # not a string
        (second["id"], "L", {"If-Match": '"1"'}, {}, 412),  # stale
        (second["id"], "L", {"If-Match": '"0"'}, {}, 412),
        (second["id"], "L", {}, {"expected_version": 1}, 412),
        (second["id"], "L", {"If-Match": "yesterday"}, {}, 400),
        (second["id"], "L", {"If-Match": '"two"'}, {}, 400),
        (second["id"], "L", {}, {"expected_version": -1}, 400),
        (first["id"], "L", {}, {}, 404),  # replaced
        ("999999", "L", {}, {}, 404),
    ]
    for value_id, value, extra_headers, options, expected in refusals:
        status, body, _ = await put_one(stack, workspace, value_id, value, headers=extra_headers, **options)
        assert status == expected, (value_id, value, extra_headers, options, body)
        errors = assert_errors_shape(body)
        if expected in (412, 422):
            assert [(e["index"], e["id"]) for e in errors] == [(0, value_id)], body
            assert errors[0]["field"] == ("value" if expected == 422 else "expected_version"), body
    status, body, _ = await stack.request("PUT", f"{VALUES}/{second['id']}", workspace,
                                          json={"custom_field_values": [{"id": second["id"], "value": "L"}]})
    assert status == 400, body
    assert await counts(db) == before

    status, body, headers = await put_one(stack, workspace, second["id"], "L", expected_version=2)
    assert status == 200, body
    [third] = values_of(body)
    assert (third["value"], third["sequence"], third["origin"]) == ("L", 3, None)
    assert third["external_reference"] == {"external_id": None, "external_source": None}
    assert header(headers, "ETag") == '"3"'

    received = await events.wait_for_count(3)
    assert [e["type"] for e in received] == ["cfv.value.created.v1", "cfv.value.replaced.v1",
                                             "cfv.value.replaced.v1"]
    assert [e["data"]["origin"] for e in received] == ["jira", "sync", None]
    assert [e["data"]["sequence"] for e in received] == [1, 2, 3]
    assert [(e["data"]["before"] or {}).get("id") for e in received] == [
        None, int(first["id"]), int(second["id"])]
    assert [e["data"]["after"]["id"] for e in received] == [int(first["id"]), int(second["id"]), int(third["id"])]
    assert received[1]["data"]["after"]["external_id"] == "row-9"


async def test_bulk_update(stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    a, b, c = await written(stack, workspace, item(size, "S", 1), item(points, 1, 1), item(size, "M", 2))

    ref = {"external_id": "X-1", "external_source": "sheet"}
    status, body, _ = await put_many(stack, workspace, {"id": a["id"], "value": "L", "origin": "bulk"},
                                     {"id": int(b["id"]), "value": 5, "expected_version": 1,
                                      "external_reference": ref})
    assert status == 200, body
    a2, b2 = values_of(body)
    assert [(v["value"], v["sequence"], v["custom_field_id"], v["subject_id"]) for v in (a2, b2)] == [
        ("L", 2, size["id"], 1), (5, 2, points["id"], 1)]
    assert a2["id"] not in (a["id"], b["id"]) and b2["id"] not in (a["id"], b["id"])
    assert (a2["origin"], b2["origin"], b2["external_reference"]) == ("bulk", None, ref)
    status, body, _ = await get(stack, workspace, subject_type="Story", order="id:asc")
    assert listed(body) == [c["id"], a2["id"], b2["id"]], body
    status, body, _ = await get(stack, workspace, f"{VALUES}/{b2['id']}")
    assert status == 200 and values_of(body) == [b2], body

    before = await counts(db)
    # Each refused whole: (updates, status, the ids the errors name)
    refused: list[tuple[list[dict[str, Any]], int, list[str]]] = [
        ([{"id": a2["id"], "value": "XL"}, {"id": b2["id"], "value": "five"}], 422, [b2["id"]]),
        ([{"id": a2["id"], "value": 12}, {"id": b2["id"], "value": "five"}], 422, sorted([a2["id"], b2["id"]])),
        ([{"id": a2["id"], "value": "XL"}, {"id": "999999", "value": "x"}, {"id": a["id"], "value": "x"}], 404,
         sorted(["999999", a["id"]])),
        ([{"id": a2["id"], "value": "XL", "expected_version": 2},
          {"id": c["id"], "value": "XL", "expected_version": 2}], 412, [c["id"]]),
        ([{"id": c["id"], "value": "XL", "expected_version": 0}], 412, [c["id"]]),
    ]
    for updates, expected, failing in refused:
        status, body, _ = await put_many(stack, workspace, *updates)
        assert status == expected, (updates, body)
        assert error_ids(body) == failing, (updates, body)
        for error in body["errors"]:
            assert updates[error["index"]]["id"] == error["id"], body
    status, body, _ = await put_many(stack, workspace, *({"id": str(n), "value": "x"} for n in range(900_000, 900_100)))
    assert status == 404 and len(body["errors"]) == 100, body  # 100 at once is allowed; all unknown
    malformed: list[Any] = [
        {"custom_field_values": [{"id": a2["id"], "value": "x"}] * 101},
        {"custom_field_values": []},
        {"custom_field_values": [{"id": a2["id"]}]},
        {"custom_field_value": {"value": "x"}},
        {"custom_field_values": [{"id": "abc", "value": "x"}]},
        {"custom_field_values": [{"id": True, "value": "x"}]},
        {"custom_field_values": [{"id": "-1", "value": "x"}]},
    ]
    for request in malformed:
        status, body, _ = await stack.request("PUT", VALUES, workspace, json=request)
        assert status == 400, (request, body)
    assert await counts(db) == before

    status, body, _ = await put_many(stack, workspace, {"id": c["id"], "value": "XS", "expected_version": 1})
    assert status == 200 and [(v["value"], v["sequence"]) for v in values_of(body)] == [("XS", 2)], body

    received = await events.wait_for_count(6)  # 3 created, then 2 and 1 replaced
    assert [e["type"].split(".")[2] for e in received] == ["created"] * 3 + ["replaced"] * 3
    assert [(e["data"]["after"]["id"], e["data"]["origin"]) for e in received[3:5]] == [
        (int(a2["id"]), "bulk"), (int(b2["id"]), None)]
    assert received[4]["data"]["after"]["external_id"] == "X-1"


# --- history ------------------------------------------------------------------------------------------


async def test_history_after_replaces_and_a_delete(stack: Stack, workspace: Workspace, db: Any) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    jira = {"external_id": "J-1", "external_source": "jira"}
    [one] = await written(stack, workspace, {**item(size, "one"), "origin": "jira", "external_reference": jira})
    await written(stack, workspace, item(size, "elsewhere", 8))
    status, body, _ = await put_one(stack, workspace, one["id"], "two", origin="sync")
    assert status == 200, body
    [two] = values_of(body)
    [three] = await written(stack, workspace, item(size, "three"))
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{three['id']}", workspace)
    assert status == 204, body
    [four] = await written(stack, workspace, item(size, "four"))

    status, body = await history(stack, workspace, size)
    assert status == 200, body
    versions = versions_of(body)
    assert body["count"] == 5
    assert [(v["change"], v["sequence"], v["value"]) for v in versions] == [
        ("created", 1, "one"), ("replaced", 2, "two"), ("replaced", 3, "three"), ("deleted", 4, None),
        ("created", 5, "four")]
    for version, answered in zip([versions[i] for i in (0, 1, 2, 4)], (one, two, three, four), strict=True):
        assert {k: v for k, v in version.items() if k != "change"} == answered
    deleted = versions[3]
    setter = f"key:{await key_id(db, workspace)}"
    assert deleted["setter"] == setter and deleted["subject_id"] == 7 and deleted["origin"] is None
    assert deleted["id"] not in {one["id"], two["id"], three["id"], four["id"]}
    assert all(v["setter"] == setter for v in versions)
    operations = [v["operation_id"] for v in versions]
    assert len(set(operations)) == 5 and all(uuid.UUID(o) for o in operations)
    stamps = [datetime.fromisoformat(v["created_at"]) for v in versions]
    assert stamps == sorted(stamps)
    assert [v["origin"] for v in versions] == ["jira", "sync", None, None, None]
    assert versions[0]["external_reference"] == jira

    status, body = await history(stack, workspace, size, subject_id=9)  # never written
    assert status == 200 and body["count"] == 0 and body["results"] == [], body
    status, body = await history(stack, workspace, size, subject_id=8)
    assert status == 200 and [v["value"] for v in versions_of(body)] == ["elsewhere"], body

    bad: list[tuple[dict[str, str], int]] = [
        ({"subject_type": "Story", "subject_id": "7"}, 400),
        ({"subject_type": "Story", "custom_field_id": size["id"]}, 400),
        ({"subject_id": "7", "custom_field_id": size["id"]}, 400),
        ({"subject_type": "Nope", "subject_id": "7", "custom_field_id": size["id"]}, 400),
        ({"subject_type": "Story", "subject_id": "7,8", "custom_field_id": size["id"]}, 400),
        ({"subject_type": "Story", "subject_id": "7", "custom_field_id": "size"}, 400),
        ({"subject_type": "Story", "subject_id": "7", "custom_field_id": "999999"}, 404),
    ]
    for params, expected in bad:
        status, body, _ = await get(stack, workspace, HISTORY, **params)
        assert status == expected, (params, body)
        assert_errors_shape(body)


# --- deletes ------------------------------------------------------------------------------------------


async def test_delete_one_value(stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    [first] = await written(stack, workspace, item(size, "S"))
    status, body, _ = await put_one(stack, workspace, first["id"], "M")
    assert status == 200, body
    [second] = values_of(body)

    before = await counts(db)
    for value_id, headers, expected in ((second["id"], {"If-Match": '"1"'}, 412),
                                        (second["id"], {"If-Match": "v2"}, 400),
                                        (first["id"], {}, 404), ("999999", {}, 404)):
        status, body, _ = await stack.request("DELETE", f"{VALUES}/{value_id}", workspace, headers=headers)
        assert status == expected, (value_id, headers, body)
        assert_errors_shape(body)
    assert await counts(db) == before
    status, body, _ = await get(stack, workspace, f"{VALUES}/{second['id']}")
    assert status == 200, body

    status, body, _ = await stack.request("DELETE", f"{VALUES}/{second['id']}", workspace,
                                          headers={"If-Match": '"2"'})
    assert (status, body) == (204, None)
    status, body, _ = await get(stack, workspace, f"{VALUES}/{second['id']}")
    assert status == 404, body
    status, body, _ = await get(stack, workspace, subject_type="Story")
    assert body["count"] == 0 and body["results"] == [], body
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{second['id']}", workspace)
    assert status == 404, body
    assert (await counts(db))[0] == before[0] + 1

    received = await events.wait_for_count(3)
    deleted = received[2]
    assert deleted["type"] == "cfv.value.deleted.v1"
    assert deleted["data"]["before"]["id"] == int(second["id"]) and deleted["data"]["after"] is None
    assert (deleted["data"]["sequence"], deleted["data"]["origin"]) == (3, None)


async def test_bulk_delete_is_all_or_nothing(stack: Stack, workspace: Workspace, other_workspace: Workspace,
                                             db: Any, events: EventCollector) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    foreign_field = await stack.create_field(other_workspace, name="Size", subject_type="Story",
                                             value_type="string")
    a, b, c, old = (v["id"] for v in await written(stack, workspace, *(item(size, f"s{n}", n) for n in range(1, 5))))
    [d] = [v["id"] for v in await written(stack, workspace, item(size, "replaced", 4))]
    [foreign] = [v["id"] for v in await written(stack, other_workspace, item(foreign_field, "theirs", 1))]

    before = await counts(db)
    # Each request names one or more ids that cannot be deleted here: nothing is deleted, each is named.
    refused: list[tuple[list[str], list[str]]] = [
        ([a, b, "999999"], ["999999"]),
        ([a, old], [old]),  # replaced since
        ([foreign, b], [foreign]),  # another workspace's
        (["999998", a, "999999"], ["999998", "999999"]),
        ([str(n) for n in range(900_000, 900_100)], [str(n) for n in range(900_000, 900_100)]),  # 100 is allowed
    ]
    for ids, failing in refused:
        for request in ({"path": f"{VALUES}?ids={','.join(ids)}"}, {"path": VALUES, "json": {"ids": ",".join(ids)}}):
            status, body, _ = await stack.request("DELETE", request["path"], workspace, json=request.get("json"))
            assert status == 404, (ids, request, body)
            assert error_ids(body) == sorted(failing), (ids, body)
    for path, body_sent in ((f"{VALUES}?ids={','.join(str(n) for n in range(1, 102))}", None),
                            (VALUES, {"ids": ",".join(str(n) for n in range(1, 102))}),
                            (VALUES, None), (f"{VALUES}?ids=", None), (f"{VALUES}?ids=abc", None),
                            (f"{VALUES}?ids={a};{b}", None), (VALUES, {"ids": ""})):
        status, body, _ = await stack.request("DELETE", path, workspace, json=body_sent)
        assert status == 400, (path, body_sent, body)
    assert await counts(db) == before
    status, body, _ = await get(stack, workspace, subject_type="Story", order="id:asc")
    assert listed(body) == [a, b, c, d], body

    status, body, _ = await stack.request("DELETE", f"{VALUES}?ids={a},{b},{a}", workspace)
    assert (status, body) == (204, None)
    status, body, _ = await stack.request("DELETE", VALUES, workspace, json={"ids": f"{c},{d}"})
    assert (status, body) == (204, None)
    status, body, _ = await get(stack, workspace, subject_type="Story")
    assert body["count"] == 0, body
    status, body, _ = await get(stack, other_workspace, f"{VALUES}/{foreign}")
    assert status == 200, body

    received = await events.wait_for_count(10)  # acme: 4 created, 1 replaced, 4 deleted; globex: 1 created
    acme = [e for e in received if e["data"]["workspace"] == "acme"]
    deletes = [e for e in acme if e["type"] == "cfv.value.deleted.v1"]
    assert sorted(str(e["data"]["before"]["id"]) for e in deletes) == sorted([a, b, c, d])
    assert all(e["data"]["after"] is None and e["data"]["origin"] is None for e in deletes)
    assert len(acme) == 9


# --- optimistic concurrency on writes -----------------------------------------------------------------


async def test_expected_version_on_writes(stack: Stack, workspace: Workspace, db: Any) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    [first] = await written(stack, workspace, {**item(size, "S"), "expected_version": 0})
    assert first["sequence"] == 1

    before = await counts(db)
    stale: list[tuple[list[dict[str, Any]], list[int]]] = [
        ([{**item(size, "M"), "expected_version": 0}], [0]),
        ([{**item(size, "M"), "expected_version": 2}], [0]),
        ([{**item(points, 1), "expected_version": 0}, {**item(size, "M"), "expected_version": 0}], [1]),
        ([{**item(size, "M"), "expected_version": 1}, {**item(points, 1, 8), "expected_version": 1}], [1]),
    ]
    for items, indexes in stale:
        status, body, _ = await write(stack, workspace, *items)
        assert status == 412, (items, body)
        errors = assert_errors_shape(body)
        assert [(e["type"], e["index"], e["field"]) for e in errors] == [
            ("precondition_failed", i, "expected_version") for i in indexes], body
    assert await counts(db) == before
    status, body, _ = await get(stack, workspace, subject_type="Story", with_custom_field_id=points["id"])
    assert body["count"] == 0, body

    answered = await written(stack, workspace, {**item(points, 1), "expected_version": 0},
                             {**item(size, "M"), "expected_version": 1})
    assert [(v["value"], v["sequence"]) for v in answered] == [(1, 1), ("M", 2)]
    # Two changes of one value in one request: the second expects the version the first leaves.
    answered = await written(stack, workspace, {**item(size, "L"), "expected_version": 2},
                             {**item(size, "XL"), "expected_version": 3})
    assert [(v["value"], v["sequence"]) for v in answered] == [("L", 3), ("XL", 4)]


# --- multi choice edits -------------------------------------------------------------------------------


async def test_multi_choice_edits(stack: Stack, workspace: Workspace, db: Any) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue", "teal", "gone"])
    shade = await stack.create_field(workspace, name="Shade", subject_type="Story", value_type="multi",
                                     choices=["dark"])
    tshirt = await stack.create_field(workspace, name="T-shirt", subject_type="Story", value_type="single",
                                      choices=["S", "M"])
    red, green, blue, teal, gone = choice_ids(colour)
    [dark] = choice_ids(shade)
    await db.execute("UPDATE custom_field_choices SET is_active = false WHERE id = $1", teal)
    await db.execute("UPDATE custom_field_choices SET deleted_at = now() WHERE id = $1", gone)

    [value] = await written(stack, workspace, item(colour, {"add": [red]}))  # no value yet: from empty
    assert (value["value"], value["sequence"]) == ([red], 1)
    steps: list[tuple[str, dict[str, Any], list[int]]] = [
        ("POST", {"add": [green, red, green]}, [red, green]),  # duplicates ignored
        ("PUT", {"add": [blue], "remove": [red]}, [green, blue]),
        ("POST", {"remove": [blue], "add": [red]}, [green, red]),  # removals first, additions appended
        ("PUT", {"remove": [green, teal]}, [red]),  # removing what is not there is no error
        ("POST", {"add": [red]}, [red]),
        ("PUT", {"add": [blue, green]}, [red, blue, green]),
    ]
    for method, edit, expected in steps:
        if method == "POST":
            status, body, _ = await write(stack, workspace, item(colour, edit))
        else:
            status, body, _ = await put_one(stack, workspace, value["id"], edit)
        assert status == 200, (method, edit, body)
        [after] = values_of(body)
        assert (after["value"], after["sequence"]) == (expected, value["sequence"] + 1), (method, edit)
        assert after["id"] != value["id"]
        value = after

    # Two edits of one value in one request apply in turn.
    answered = await written(stack, workspace, item(colour, {"remove": [red, blue]}),
                             item(colour, {"add": [red], "remove": [green]}))
    assert [(v["value"], v["sequence"]) for v in answered] == [([green], 8), ([red], 9)]
    value = answered[1]

    before = await counts(db)
    invalid: list[tuple[dict[str, Any], str]] = [
        ({"add": [99_999_999]}, "not a choice"),
        ({"add": [teal]}, "not a choice"),  # inactive
        ({"add": [gone]}, "not a choice"),  # deleted
        ({"add": [dark]}, "not a choice"),  # another field's
        ({"add": [green], "remove": [green]}, "cannot both add and remove"),
        ({"remove": [red]}, "leave no choice"),
        ({"add": [], "remove": [red]}, "leave no choice"),
        ({"add": [green], "colour": "red"}, ""),
        ({}, ""),
        ({"add": green}, ""),
    ]
    for edit, complaint in invalid:
        for method in ("POST", "PUT"):
            if method == "POST":
                status, body, _ = await write(stack, workspace, item(colour, edit))
            else:
                status, body, _ = await put_one(stack, workspace, value["id"], edit)
            assert status == 422, (method, edit, body)
            [error] = assert_errors_shape(body)
            assert (error["type"], error["field"], error["index"]) == ("validation", "value", 0), error
            assert complaint in error["message"], (edit, error)
    for request_item in (item(colour, {"remove": [red]}, 8),  # no value there: nothing would be left
                         item(tshirt, {"add": [choice_ids(tshirt)[0]]})):  # not a multi field
        status, body, _ = await write(stack, workspace, request_item)
        assert status == 422, (request_item, body)
    status, body, _ = await write(stack, workspace, {**item(colour, {"add": [green]}), "expected_version": 8})
    assert status == 412, body
    assert await counts(db) == before
    status, body, headers = await get(stack, workspace, f"{VALUES}/{value['id']}")
    assert status == 200 and values_of(body)[0]["value"] == [red] and header(headers, "ETag") == '"9"', body


async def test_concurrent_set_edits_lose_nothing(stack: Stack, workspace: Workspace) -> None:
    labels = ["keep", *(f"drop{n}" for n in range(10)), *(f"add{n}" for n in range(30))]
    tags = await stack.create_field(workspace, name="Tags", subject_type="Story", value_type="multi", choices=labels)
    ids = dict(zip(labels, choice_ids(tags), strict=True))
    keep, drops, adds = ids["keep"], [ids[f"drop{n}"] for n in range(10)], [ids[f"add{n}"] for n in range(30)]
    await written(stack, workspace, item(tags, [keep, *drops]))

    edits: list[dict[str, Any]] = [{"add": [a]} for a in adds[:20]]
    edits += [{"remove": [d]} for d in drops]
    edits += [{"add": [a], "remove": [d]} for a, d in zip(adds[20:], drops, strict=True)]
    answers = await asyncio.gather(*(write(stack, workspace, item(tags, edit)) for edit in edits))
    assert [status for status, _, _ in answers] == [200] * len(edits), [b for s, b, _ in answers if s != 200]

    _, body, _ = await get(stack, workspace, subject_type="Story")
    [final] = values_of(body)
    assert set(final["value"]) == {keep, *adds}, final["value"]
    assert len(final["value"]) == 31 and final["value"][0] == keep
    assert final["sequence"] == 1 + len(edits)
    _, body = await history(stack, workspace, tags)
    assert [v["sequence"] for v in versions_of(body)] == list(range(1, len(edits) + 2))

    # The same through PUT by id: a client whose id was replaced before its edit was checked may be told 404,
    # but every edit answered 200 is in the final set, and nothing else is.
    [start] = await written(stack, workspace, item(tags, [keep], 8))
    answers = await asyncio.gather(*(put_one(stack, workspace, start["id"], {"add": [a], "remove": [drops[0]]})
                                     for a in adds[:15]))
    assert {status for status, _, _ in answers} <= {200, 404}, answers
    applied = [a for a, (status, _, _) in zip(adds[:15], answers, strict=True) if status == 200]
    assert applied, answers
    _, body, _ = await get(stack, workspace, subject_type="Story", with_subject_id="8")
    [final] = values_of(body)
    assert sorted(final["value"]) == sorted([keep, *applied]) and final["sequence"] == 1 + len(applied), final


# --- tenancy ------------------------------------------------------------------------------------------


async def test_another_workspace_never_reads_or_changes_values(stack: Stack, workspace: Workspace,
                                                               other_workspace: Workspace, db: Any) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    theirs = await stack.create_field(other_workspace, name="Size", subject_type="Story", value_type="string")
    [ours] = await written(stack, workspace, item(size, "ours"))
    [their_value] = await written(stack, other_workspace, item(theirs, "theirs"))

    for params, expected in (({}, [their_value["id"]]), ({"with_subject_id": "7"}, [their_value["id"]]),
                             ({"with_custom_field_id": size["id"]}, []),
                             ({"include": "custom_field"}, [their_value["id"]])):
        status, body, _ = await get(stack, other_workspace, subject_type="Story", **params)
        assert status == 200 and listed(body) == expected, (params, body)
        if "include" in params:
            assert set(body["custom_fields"]) == {theirs["id"]}, body

    before = await counts(db)
    refused = [
        ("GET", f"{VALUES}/{ours['id']}", None, [None]),
        ("PUT", f"{VALUES}/{ours['id']}", {"custom_field_value": {"value": "mine"}}, [None]),
        ("PUT", VALUES, {"custom_field_values": [{"id": ours["id"], "value": "mine"}]}, [ours["id"]]),
        ("DELETE", f"{VALUES}/{ours['id']}", None, [None]),
        ("DELETE", f"{VALUES}?ids={ours['id']}", None, [ours["id"]]),
        ("DELETE", VALUES, {"ids": f"{their_value['id']},{ours['id']}"}, [ours["id"]]),
        ("GET", f"{HISTORY}?subject_type=Story&subject_id=7&custom_field_id={size['id']}", None, [None]),
    ]
    for method, path, body_sent, named in refused:
        status, body, _ = await stack.request(method, path, other_workspace, json=body_sent)
        assert status == 404, (method, path, body)
        assert [e.get("id") for e in assert_errors_shape(body)] == named, (method, path, body)
    for path in (f"{VALUES}/{their_value['id']}",
                 f"{HISTORY}?subject_type=Story&subject_id=7&custom_field_id={theirs['id']}"):
        status, body, _ = await stack.request("GET", path, workspace)
        assert status == 404, (path, body)
    assert await counts(db) == before

    status, body, headers = await get(stack, workspace, f"{VALUES}/{ours['id']}")
    assert status == 200 and values_of(body) == [ours] and header(headers, "ETag") == '"1"', body
    status, body = await history(stack, workspace, size)
    assert [v["value"] for v in versions_of(body)] == ["ours"], body



# --- inputs at the edges of what can be stored ---------------------------------------------------------


async def test_out_of_range_inputs_are_answered_not_500(stack: Stack, workspace: Workspace, db: Any) -> None:
    """Ids beyond 64 bits, pages beyond any offset and instants beyond Python's range are still requests a
    client may send: each gets a proper answer. Every case is tried before failing, to report them all."""
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="string")
    a, c = await written(stack, workspace, item(size, "S", 1), item(size, "M", 2))
    before = await counts(db)
    huge = "9999999999999999999"  # 19 digits, beyond bigint
    cases: list[tuple[str, str, Any, int, list[str] | None]] = [  # request, status, the ids listed if 200
        ("GET", f"{VALUES}/{huge}", None, 404, None),
        ("GET", f"{VALUES}/{10**20}", None, 404, None),
        ("PUT", f"{VALUES}/{huge}", {"custom_field_value": {"value": "x"}}, 404, None),
        ("DELETE", f"{VALUES}/{huge}", None, 404, None),
        ("GET", f"{VALUES}?subject_type=Story&page=1000000000&per_page=200", None, 200, []),  # past the end
        ("GET", f"{VALUES}?subject_type=Story&page=99999999999999999&per_page=200", None, 400, None),  # beyond
        ("GET", f"{VALUES}?subject_type=Story&page={10**20}", None, 400, None),
        ("GET", f"{VALUES}?" + urlencode({"subject_type": "Story", "updated_after": "0001-01-01T00:00:00+01:00"}),
         None, 200, [a["id"], c["id"]]),
        ("GET", f"{VALUES}?" + urlencode({"subject_type": "Story", "updated_before": "9999-12-31T23:00:00-05:00"}),
         None, 200, [a["id"], c["id"]]),
        ("PUT", VALUES, {"custom_field_values": [{"id": f"{a['id']},{c['id']}", "value": "x"}]}, 400, None),
    ]
    wrong = []
    for method, path, body_sent, expected, ids in cases:
        status, body, _ = await stack.request(method, path, workspace, json=body_sent)
        if status != expected or (ids is not None and listed(body) != ids):
            wrong.append((method, path, body_sent, f"expected {expected}", status, body))
    assert not wrong, "\n".join(map(str, wrong))
    assert await counts(db) == before


async def owner_id(db: Any, workspace: Workspace) -> str:
    """The id (as text) of the workspace's 'owner' service account, whose key the tests write with."""
    return str(await db.fetchval("SELECT id FROM users WHERE workspace_id = $1 AND name = 'owner'", workspace.id))
