"""Choices through the Kantata face: ``/api/v1/custom_field_choices`` (list, create, read, change, delete), the
delete policy (a choice a current value holds is not deleted: 409), its race with concurrent writes, and the
same policy on the Plane face's options."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from cfv_schemas.kantata import CustomFieldChoiceOut
from support import Stack, Workspace
from support.kantata import FIELDS, VALUES, assert_errors_shape, item, values_of, write
from support.plane import WORK_ITEM, a_uuid, new_project

CHOICES = "/api/v1/custom_field_choices"
CHOICE_KEYS = {"id", "custom_field_id", "label", "position", "external_reference", "created_at", "updated_at"}


def choices_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The choices of a Kantata answer in the order of its ``results``, checked against the format."""
    assert set(body) == {"count", "meta", "results", "custom_field_choices"}, body
    assert all(ref["key"] == "custom_field_choices" for ref in body["results"]), body
    ids = [ref["id"] for ref in body["results"]]
    assert sorted(body["custom_field_choices"]) == sorted(ids), body
    found = [body["custom_field_choices"][i] for i in ids]
    for choice, choice_id in zip(found, ids, strict=True):
        assert set(choice) == CHOICE_KEYS and choice["id"] == choice_id, choice
        CustomFieldChoiceOut.model_validate(choice)
    return found


def only_choice(body: dict[str, Any]) -> dict[str, Any]:
    """The single choice of an answer about one choice."""
    assert body["count"] == 1
    assert body["meta"] == {"count": 1, "page_count": 1, "page_number": 1, "page_size": 1}
    [choice] = choices_of(body)
    return choice


async def create(stack: Stack, workspace: Workspace, field: dict[str, Any] | int | str, label: str,
                 **extra: Any) -> dict[str, Any]:
    """Add a choice (201 expected); return it."""
    field_id = int(field["id"]) if isinstance(field, dict) else int(field)
    status, body, _ = await stack.request("POST", CHOICES, workspace, json={
        "custom_field_choice": {"custom_field_id": field_id, "label": label, **extra}})
    assert status == 201, body
    return only_choice(body)


async def listed(stack: Stack, workspace: Workspace, params: str = "") -> tuple[dict[str, Any], list[Any]]:
    """GET the listing (200 expected); return the body and its choices."""
    status, body, _ = await stack.request("GET", f"{CHOICES}{'?' + params if params else ''}", workspace)
    assert status == 200, (params, body)
    return body, choices_of(body)


async def delete_field(stack: Stack, workspace: Workspace, field: dict[str, Any]) -> None:
    status, body, _ = await stack.request("DELETE", f"{FIELDS}/{field['id']}", workspace)
    assert status == 204, body


def error_of(body: Any, status: int, expected: int, type_: str) -> dict[str, Any]:
    assert status == expected, body
    errors = assert_errors_shape(body)
    assert errors[0]["type"] == type_, body
    return errors[0]


# --- create, read, change -----------------------------------------------------------------------------


@pytest.mark.parametrize("value_type", ["single", "multi"])
async def test_create_answers_201_appends_and_is_writable_at_once(stack: Stack, workspace: Workspace, db: Any,
                                                                  value_type: str) -> None:
    field = await stack.create_field(workspace, name="Size", subject_type="Story", value_type=value_type,
                                     choices=["S", "M"])
    status, body, headers = await stack.request("POST", CHOICES, workspace, json={"custom_field_choice": {
        "custom_field_id": int(field["id"]), "label": "  L  ",
        "external_reference": {"external_id": "c-1", "external_source": "jira"}}})
    assert status == 201, body
    assert headers["Content-Type"].startswith("application/json")
    large = only_choice(body)
    assert large["custom_field_id"] == field["id"] and large["label"] == "L"  # whitespace stripped
    assert large["position"] == 2  # after the last choice
    assert large["external_reference"] == {"external_id": "c-1", "external_source": "jira"}
    assert large["created_at"] == large["updated_at"]
    row = await db.fetchrow("SELECT * FROM custom_field_choices WHERE id = $1", int(large["id"]))
    assert (row["custom_field_id"], row["label"], row["position"], row["deleted_at"]) == (
        int(field["id"]), "L", 2, None)
    assert (row["external_id"], row["external_source"]) == ("c-1", "jira")

    first = await create(stack, workspace, field, "XS", position=0)
    assert first["position"] == 0 and first["external_reference"] == {"external_id": None, "external_source": None}
    assert (await create(stack, workspace, field, "XL"))["position"] == 3
    status, body, _ = await stack.request("GET", f"{CHOICES}/{large['id']}", workspace)
    assert status == 200 and only_choice(body) == large, body
    # The field answers the new choices too, in order.
    status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
    assert status == 200, body
    assert [c["label"] for c in next(iter(body["custom_fields"].values()))["choices"]] == ["S", "XS", "M", "L", "XL"]

    # A new choice can be written as a value at once.
    status, body, _ = await write(stack, workspace, item(field, [int(large["id"])] if value_type == "multi"
                                                         else int(large["id"])))
    assert status == 200, body
    assert values_of(body)[0]["value"] == [int(large["id"])]
    assert await db.fetchval("SELECT value FROM current_values") == [int(large["id"])]


async def test_create_refusals(stack: Stack, workspace: Workspace, other_workspace: Workspace, db: Any) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red"])
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="single",
                                      choices=["x"])
    gone = await stack.create_field(workspace, name="Gone", subject_type="Story", value_type="single",
                                    choices=["y"])
    await delete_field(stack, workspace, gone)
    others = [await stack.create_field(workspace, name=f"F {t}", subject_type="Story", value_type=t, **extra)
              for t, extra in (("string", {}), ("number", {}), ("boolean", {}),
                               ("relation", {"relation_target": "user"}))]
    fid = int(colour["id"])
    cases: list[tuple[Any, int, str, str | None]] = [
        *[({"custom_field_id": int(f["id"]), "label": "a"}, 422, "validation", "custom_field_id") for f in others],
        ({"custom_field_id": 999_999, "label": "a"}, 404, "not_found", "custom_field_id"),
        ({"custom_field_id": int(theirs["id"]), "label": "a"}, 404, "not_found", "custom_field_id"),
        ({"custom_field_id": int(gone["id"]), "label": "a"}, 404, "not_found", "custom_field_id"),
        ({"custom_field_id": fid}, 400, "validation", "custom_field_choice.label"),
        ({"custom_field_id": fid, "label": "   "}, 400, "validation", "custom_field_choice.label"),
        ({"custom_field_id": fid, "label": ""}, 400, "validation", "custom_field_choice.label"),
        ({"custom_field_id": fid, "label": "nul\x00"}, 400, "validation", "custom_field_choice.label"),
        ({"custom_field_id": fid, "label": "x" * 256}, 400, "validation", "custom_field_choice.label"),
        ({"custom_field_id": fid, "label": 5}, 400, "validation", "custom_field_choice.label"),
        ({"label": "a"}, 400, "validation", "custom_field_choice.custom_field_id"),
        ({"custom_field_id": True, "label": "a"}, 400, "validation", "custom_field_choice.custom_field_id"),
        ({"custom_field_id": fid, "label": "a", "colour": "red"}, 400, "validation", "custom_field_choice.colour"),
        ({"custom_field_id": fid, "label": "a", "position": -1}, 400, "validation", "custom_field_choice.position"),
        ({"custom_field_id": fid, "label": "a", "position": "1"}, 400, "validation", "custom_field_choice.position"),
        ({"custom_field_id": fid, "label": "a", "position": 1.5}, 400, "validation", "custom_field_choice.position"),
        ({"custom_field_id": fid, "label": "a", "external_reference": {"id": "1"}}, 400, "validation",
         "custom_field_choice.external_reference.id"),
    ]
    before = await db.fetchval("SELECT count(*) FROM custom_field_choices")
    for spec, expected, type_, field in cases:
        status, body, _ = await stack.request("POST", CHOICES, workspace, json={"custom_field_choice": spec})
        error = error_of(body, status, expected, type_)
        assert field is None or any(e["field"] == field for e in body["errors"]), (spec, body)
        assert error["message"], spec
    for raw in ({}, {"custom_field_choice": {"custom_field_id": fid, "label": "a"}, "extra": 1}, [], "x"):
        status, body, _ = await stack.request("POST", CHOICES, workspace, json=raw)
        error_of(body, status, 400, "validation")
    status, body, _ = await stack.request("POST", CHOICES, workspace, data=b"{not json",
                                          headers={"Content-Type": "application/json"})
    error_of(body, status, 400, "validation")
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices") == before


async def test_out_of_range_numbers_are_client_errors_not_500(stack: Stack, workspace: Workspace, db: Any) -> None:
    field = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="single",
                                     choices=["S"])
    fid, choice = int(field["id"]), field["choices"][0]["id"]
    cases: list[tuple[str, str, Any, int]] = [
        ("POST", CHOICES, {"custom_field_id": fid, "label": "a", "position": 2**31}, 400),  # beyond integer
        ("POST", CHOICES, {"custom_field_id": 2**63, "label": "a"}, 404),  # an id beyond bigint names no field
        ("PATCH", f"{CHOICES}/{choice}", {"position": 2**31}, 400),
    ]
    answered = []
    for method, path, spec, _ in cases:  # sent as text: orjson cannot encode an integer beyond 64 bits
        status, body, _ = await stack.request(method, path, workspace, headers={"Content-Type": "application/json"},
                                              data=json.dumps({"custom_field_choice": spec}).encode())
        answered.append((method, spec, status, body["errors"][0]["type"] if isinstance(body, dict) else body))
    assert [a[2] for a in answered] == [c[3] for c in cases], answered
    assert await db.fetchval("SELECT count(*) FROM custom_field_choices") == 1


async def test_patch_changes_label_position_and_reference_only(stack: Stack, workspace: Workspace,
                                                               db: Any) -> None:
    field = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="single",
                                     choices=["S", "M", "L"])
    other = await stack.create_field(workspace, name="Other", subject_type="Story", value_type="single",
                                     choices=["o"])
    small = await create(stack, workspace, field, "XS", external_reference={"external_id": "e", "external_source": "s"})
    path = f"{CHOICES}/{small['id']}"
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"label": " Tiny "}, {"label": "Tiny"}),
        ({"position": 0}, {"position": 0}),
        ({"external_reference": {"external_id": "e2", "external_source": "jira"}},
         {"external_reference": {"external_id": "e2", "external_source": "jira"}}),
        ({"label": "XS", "position": 7}, {"label": "XS", "position": 7}),
        ({}, {}),
    ]
    current = small
    for change, expected in steps:
        status, body, _ = await stack.request("PATCH", path, workspace, json={"custom_field_choice": change})
        assert status == 200, (change, body)
        patched = only_choice(body)
        assert patched == {**current, **expected, "updated_at": patched["updated_at"]}, change
        assert datetime.fromisoformat(patched["updated_at"]) >= datetime.fromisoformat(current["updated_at"])
        status, body, _ = await stack.request("GET", path, workspace)
        assert status == 200 and only_choice(body) == patched
        current = patched
    assert datetime.fromisoformat(current["updated_at"]) > datetime.fromisoformat(small["updated_at"])
    row = await db.fetchrow("SELECT * FROM custom_field_choices WHERE id = $1", int(small["id"]))
    assert (row["label"], row["position"], row["external_id"], row["custom_field_id"]) == (
        "XS", 7, "e2", int(field["id"]))

    for change in ({"custom_field_id": int(other["id"])}, {"label": ""}, {"label": "  "}, {"position": -1},
                   {"position": True}, {"label": None, "colour": 1}, {"external_reference": {"x": 1}}):
        status, body, _ = await stack.request("PATCH", path, workspace, json={"custom_field_choice": change})
        error_of(body, status, 400, "validation")
    for raw in ({}, {"custom_field_choice": {}, "extra": 1}, {"label": "top level"}):
        status, body, _ = await stack.request("PATCH", path, workspace, json=raw)
        error_of(body, status, 400, "validation")
    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and only_choice(body) == current  # nothing refused changed anything
    # A move shows in the order of the listing.
    _, choices = await listed(stack, workspace, f"custom_field_id={field['id']}")
    assert [c["label"] for c in choices] == ["S", "M", "L", "XS"]


async def test_unknown_and_foreign_choices_are_404(stack: Stack, workspace: Workspace, other_workspace: Workspace,
                                                   db: Any) -> None:
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="single",
                                      choices=["x"])
    their_choice = theirs["choices"][0]["id"]
    gone = await stack.create_field(workspace, name="Gone", subject_type="Story", value_type="single",
                                    choices=["y"])
    await delete_field(stack, workspace, gone)
    mine = await stack.create_field(workspace, name="Mine", subject_type="Story", value_type="single",
                                    choices=["a", "b"])
    status, body, _ = await stack.request("DELETE", f"{CHOICES}/{mine['choices'][1]['id']}", workspace)
    assert status == 204, body
    for choice_id in ("999999", "abc", "1.5", "-1", "1e3", "9" * 19, "%20" + their_choice, their_choice,
                      gone["choices"][0]["id"], mine["choices"][1]["id"]):
        for method, payload in (("GET", None), ("PATCH", {"custom_field_choice": {"label": "hacked"}}),
                                ("DELETE", None)):
            status, body, _ = await stack.request(method, f"{CHOICES}/{choice_id}", workspace, json=payload)
            error_of(body, status, 404, "not_found")
    assert await db.fetchval("SELECT label FROM custom_field_choices WHERE id = $1", int(their_choice)) == "x"
    assert await db.fetchval("SELECT deleted_at FROM custom_field_choices WHERE id = $1", int(their_choice)) is None
    # The owner still sees its choice.
    status, body, _ = await stack.request("GET", f"{CHOICES}/{their_choice}", other_workspace)
    assert status == 200 and only_choice(body)["label"] == "x", body


# --- listing ------------------------------------------------------------------------------------------


async def test_listing_order_filter_and_scope(stack: Stack, workspace: Workspace, other_workspace: Workspace) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="single",
                                    choices=["S", "M"])
    await stack.create_field(workspace, name="Text", subject_type="Story", value_type="string")
    theirs = await stack.create_field(other_workspace, name="Theirs", subject_type="Story", value_type="single",
                                      choices=["x"])
    gone = await stack.create_field(workspace, name="Gone", subject_type="Story", value_type="single",
                                    choices=["y"])
    # Positions that tie and that come before existing ones: ordered by field, position, then id.
    await create(stack, workspace, colour, "teal", position=1)
    await create(stack, workspace, colour, "black", position=0)
    await create(stack, workspace, size, "L", position=0)
    status, body, _ = await stack.request("DELETE", f"{CHOICES}/{colour['choices'][1]['id']}", workspace)  # green
    assert status == 204, body
    await delete_field(stack, workspace, gone)
    assert int(colour["id"]) < int(size["id"])
    expected_by_field = {colour["id"]: ["red", "black", "teal", "blue"], size["id"]: ["S", "L", "M"]}
    everything = expected_by_field[colour["id"]] + expected_by_field[size["id"]]

    body, choices = await listed(stack, workspace)
    assert [c["label"] for c in choices] == everything
    assert body["count"] == 7
    assert body["meta"] == {"count": 7, "page_count": 1, "page_number": 1, "page_size": 20}
    by_label = {c["label"]: c for c in choices}
    assert by_label["teal"]["custom_field_id"] == colour["id"] and by_label["teal"]["position"] == 1
    assert [int(c["id"]) for c in choices if c["position"] == 0 and c["custom_field_id"] == colour["id"]] == sorted(
        int(by_label[n]["id"]) for n in ("red", "black"))

    for params, labels in [
        (f"custom_field_id={colour['id']}", expected_by_field[colour["id"]]),
        (f"custom_field_id={size['id']}", expected_by_field[size["id"]]),
        (f"custom_field_id={size['id']},{colour['id']}", everything),
        (f"custom_field_id={colour['id']},{theirs['id']},999999", expected_by_field[colour["id"]]),
        (f"custom_field_id={theirs['id']}", []),
        (f"custom_field_id={gone['id']}", []),
        ("custom_field_id=999999", []),
    ]:
        body, choices = await listed(stack, workspace, params)
        assert [c["label"] for c in choices] == labels, params
        assert body["count"] == len(labels) == body["meta"]["count"], params
    # The other workspace sees only its own.
    _, choices = await listed(stack, other_workspace)
    assert [c["label"] for c in choices] == ["x"]


async def test_listing_pagination(stack: Stack, workspace: Workspace) -> None:
    many = await stack.create_field(workspace, name="Many", subject_type="Story", value_type="multi",
                                    choices=[f"c{n:02}" for n in range(25)])
    labels = [f"c{n:02}" for n in range(25)]
    body, choices = await listed(stack, workspace)
    assert [c["label"] for c in choices] == labels[:20]
    assert body["count"] == 25
    assert body["meta"] == {"count": 25, "page_count": 2, "page_number": 1, "page_size": 20}
    for params, page_labels, meta in [
        ("page=2", labels[20:], (2, 2, 20)),
        ("per_page=7&page=4", labels[21:], (4, 4, 7)),
        (f"per_page=7&page=2&custom_field_id={many['id']}", labels[7:14], (4, 2, 7)),
        ("per_page=200", labels, (1, 1, 200)),
        ("per_page=1&page=25", labels[24:], (25, 25, 1)),
        ("page=3", [], (2, 3, 20)),
    ]:
        body, choices = await listed(stack, workspace, params)
        assert [c["label"] for c in choices] == page_labels, params
        assert body["count"] == 25, params
        assert body["meta"] == {"count": 25, "page_count": meta[0], "page_number": meta[1],
                                "page_size": meta[2]}, params
    pages = [await listed(stack, workspace, f"per_page=4&page={p}") for p in range(1, 8)]
    assert [c["label"] for _, page in pages for c in page] == labels  # no overlap, no gap


async def test_listing_bad_query_is_400(stack: Stack, workspace: Workspace) -> None:
    await stack.create_field(workspace, name="Size", subject_type="Story", value_type="single", choices=["S"])
    for params, field in [
        ("custom_field_id=", "custom_field_id"), ("custom_field_id=abc", "custom_field_id"),
        ("custom_field_id=1,,2", "custom_field_id"), ("custom_field_id=1,", "custom_field_id"),
        ("custom_field_id=-1", "custom_field_id"), ("custom_field_id=1;2", "custom_field_id"),
        ("custom_field_id=1.0", "custom_field_id"), ("custom_field_id=" + "9" * 30, "custom_field_id"),
        ("custom_field_id=%EF%BC%91", "custom_field_id"),  # a full-width digit
        ("per_page=0", None), ("per_page=201", None), ("per_page=x", None), ("page=0", None),
        ("page=-1", None), ("page=x", None),
    ]:
        status, body, _ = await stack.request("GET", f"{CHOICES}?{params}", workspace)
        error = error_of(body, status, 400, "validation")
        assert field is None or error["field"] == field, (params, body)


# --- delete -------------------------------------------------------------------------------------------


async def release_by_replacing(stack: Stack, workspace: Workspace, value: dict[str, Any], keep: int) -> None:
    field = {"id": value["custom_field_id"], "subject_type": value["subject_type"]}
    status, body, _ = await write(stack, workspace, item(field, [keep] if value["value_type"] == "multi" else keep,
                                                         value["subject_id"]))
    assert status == 200, body


async def release_by_deleting(stack: Stack, workspace: Workspace, value: dict[str, Any], keep: int) -> None:
    status, body, _ = await stack.request("DELETE", f"{VALUES}/{value['id']}", workspace)
    assert status == 204, body


async def release_by_bulk_delete(stack: Stack, workspace: Workspace, value: dict[str, Any], keep: int) -> None:
    status, body, _ = await stack.request("DELETE", f"{VALUES}?ids={value['id']}", workspace)
    assert status == 204, body


async def release_by_edit(stack: Stack, workspace: Workspace, value: dict[str, Any], keep: int) -> None:
    field = {"id": value["custom_field_id"], "subject_type": value["subject_type"]}
    chosen = value["value"]
    status, body, _ = await write(stack, workspace, item(field, {"add": [keep], "remove": [c for c in chosen
                                                                                          if c != keep]},
                                                         value["subject_id"]))
    assert status == 200 and values_of(body)[0]["value"] == [keep], body


RELEASES = {"replace": release_by_replacing, "delete": release_by_deleting, "bulk-delete": release_by_bulk_delete,
            "multi-edit": release_by_edit}


@pytest.mark.parametrize(("value_type", "release"), [
    ("single", "replace"), ("single", "delete"), ("multi", "replace"), ("multi", "bulk-delete"),
    ("multi", "multi-edit"),
])
async def test_delete_refused_while_held_then_allowed(stack: Stack, workspace: Workspace, db: Any,
                                                      value_type: str, release: str) -> None:
    field = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type=value_type,
                                     choices=["red", "keep"])
    red, keep = (int(c["id"]) for c in field["choices"])
    held = [red, keep] if value_type == "multi" else red
    status, body, _ = await write(stack, workspace, item(field, held, 1), item(field, held, 2))
    assert status == 200, body
    holders = values_of(body)
    path = f"{CHOICES}/{red}"

    status, body, _ = await stack.request("DELETE", path, workspace)
    error = error_of(body, status, 409, "conflict")
    assert error["message"], body
    status, body, _ = await stack.request("GET", path, workspace)
    assert status == 200 and only_choice(body)["label"] == "red", body
    assert await db.fetchval("SELECT deleted_at FROM custom_field_choices WHERE id = $1", red) is None
    _, choices = await listed(stack, workspace)
    assert [c["label"] for c in choices] == ["red", "keep"]
    status, body, _ = await write(stack, workspace, item(field, held, 3))  # still usable
    assert status == 200, body
    holders += values_of(body)

    for n, value in enumerate(holders):
        await RELEASES[release](stack, workspace, value, keep)
        if n < len(holders) - 1:  # any one value holding it still blocks the delete
            status, body, _ = await stack.request("DELETE", path, workspace)
            error_of(body, status, 409, "conflict")
    assert await db.fetchval("SELECT count(*) FROM current_values WHERE value @> $1::jsonb", [red]) == 0
    status, body, _ = await stack.request("DELETE", path, workspace)
    assert status == 204 and body is None, body

    assert await db.fetchval("SELECT deleted_at FROM custom_field_choices WHERE id = $1", red) is not None
    for method, payload in (("GET", None), ("PATCH", {"custom_field_choice": {"label": "again"}}),
                            ("DELETE", None)):
        status, body, _ = await stack.request(method, path, workspace, json=payload)
        error_of(body, status, 404, "not_found")
    _, choices = await listed(stack, workspace)
    assert [c["label"] for c in choices] == ["keep"]
    status, body, _ = await stack.request("GET", f"{FIELDS}/{field['id']}", workspace)
    assert [c["label"] for c in next(iter(body["custom_fields"].values()))["choices"]] == ["keep"]
    status, body, _ = await write(stack, workspace, item(field, held, 4))
    error = error_of(body, status, 422, "validation")
    assert error["field"] == "value" and "not a choice of this field" in error["message"], body
    assert await db.fetchval("SELECT count(*) FROM current_values WHERE value @> $1::jsonb", [red]) == 0


async def test_other_workspace_values_do_not_block_and_foreign_delete_is_404(
        stack: Stack, workspace: Workspace, other_workspace: Workspace, db: Any) -> None:
    field = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="single",
                                     choices=["red", "blue"])
    red, blue = (int(c["id"]) for c in field["choices"])
    status, body, _ = await write(stack, workspace, item(field, blue))
    assert status == 200, body
    # Another workspace cannot delete it; a value of another choice does not block it.
    status, body, _ = await stack.request("DELETE", f"{CHOICES}/{red}", other_workspace)
    error_of(body, status, 404, "not_found")
    assert await db.fetchval("SELECT deleted_at FROM custom_field_choices WHERE id = $1", red) is None
    status, body, _ = await stack.request("DELETE", f"{CHOICES}/{red}", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("DELETE", f"{CHOICES}/{blue}", workspace)
    error_of(body, status, 409, "conflict")


@pytest.mark.parametrize("value_type", ["single", "multi"])
async def test_delete_racing_writes_never_leaves_a_held_deleted_choice(stack: Stack, workspace: Workspace,
                                                                       db: Any, value_type: str) -> None:
    field = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type=value_type,
                                     choices=["base"])
    base = int(field["choices"][0]["id"])
    writers = 16
    outcomes = []
    # Delays from before the writes reach the worker to amid them; in the last round the delete waits for a
    # first write to be answered (so the choice is held) while the others are still in flight.
    delays: list[float | None] = [0, 0.005, 0.01, 0.02, 0.03, 0.05, None]
    for round_, delay in enumerate(delays):
        choice = int((await create(stack, workspace, field, f"racy {round_}"))["id"])
        value = [base, choice] if value_type == "multi" else choice
        answered = asyncio.Event()

        async def one_write(subject: str, value: Any = value, answered: asyncio.Event = answered
                            ) -> tuple[int, Any, dict[str, str]]:
            answer = await write(stack, workspace, item(field, value, subject))
            answered.set()
            return answer

        async def delete(choice: int = choice, delay: float | None = delay, answered: asyncio.Event = answered
                         ) -> tuple[int, Any, dict[str, str]]:
            await (asyncio.sleep(delay) if delay is not None else answered.wait())
            return await stack.request("DELETE", f"{CHOICES}/{choice}", workspace)

        requests = [one_write(f"{round_ + 1}{n:02}") for n in range(writers)]
        at = round_ * writers // len(delays)
        requests.insert(at, delete())
        answers = await asyncio.gather(*requests)
        delete_status, delete_body, _ = answers.pop(at)
        statuses = [status for status, _, _ in answers]
        assert set(statuses) <= {200, 422}, answers
        held = await db.fetchval("SELECT count(*) FROM current_values WHERE value @> $1::jsonb", [choice])
        deleted = await db.fetchval("SELECT deleted_at IS NOT NULL FROM custom_field_choices WHERE id = $1", choice)
        status, body, _ = await stack.request("GET", f"{CHOICES}/{choice}", workspace)
        if delete_status == 204:
            # Deleted: so no write of it may have succeeded, before the delete (it would have been refused)
            # or after it (the choice was gone).
            assert held == 0 and deleted and status == 404, (round_, held, statuses)
            assert statuses == [422] * writers, (round_, statuses)
            assert all("not a choice of this field" in b["errors"][0]["message"] for _, b, _ in answers), answers
        else:
            # Refused: so the choice stayed, and every write of it succeeded.
            error_of(delete_body, delete_status, 409, "conflict")
            assert not deleted and status == 200, (round_, body)
            assert statuses == [200] * writers and held == writers, (round_, held, statuses)
        outcomes.append(delete_status)
    assert outcomes[-1] == 409, outcomes
    # Whatever the rounds decided, no deleted choice is held by any current value.
    assert await db.fetchval(
        "SELECT count(*) FROM current_values v JOIN custom_field_choices c ON c.deleted_at IS NOT NULL "
        "AND v.value @> jsonb_build_array(c.id)") == 0


# --- the Plane face's options -------------------------------------------------------------------------


async def test_plane_option_delete_refused_while_held(stack: Stack, workspace: Workspace, db: Any) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    a = await plane.create_option(prop, "a")
    b = await plane.create_option(prop, "b")
    options = plane.property_path(prop["id"]) + "options/"
    other_item = a_uuid()
    for work_item in (WORK_ITEM, other_item):
        status, body, _ = await plane.write(prop, [a["id"], b["id"]], work_item=work_item)
        assert status == 201, body
    status, body, _ = await plane.request("DELETE", f"{options}{a['id']}/")
    assert status == 409 and isinstance(body, dict) and set(body) == {"error"} and body["error"], body
    status, body, _ = await plane.request("GET", f"{options}{a['id']}/")
    assert status == 200 and body["name"] == "a", body
    status, body, _ = await plane.write(prop, [b["id"]], work_item=WORK_ITEM, method="PATCH")
    assert status == 200, body
    status, body, _ = await plane.request("DELETE", f"{options}{a['id']}/")  # the other item still holds it
    assert status == 409, body
    status, body, _ = await plane.request("DELETE", plane.values_path(other_item, prop["id"]))
    assert status == 204, body
    status, body, _ = await plane.request("DELETE", f"{options}{a['id']}/")
    assert status == 204 and body is None, body
    status, body, _ = await plane.request("GET", f"{options}{a['id']}/")
    assert status == 404, body
    status, body, _ = await plane.request("GET", options)
    assert status == 200 and [o["name"] for o in body] == ["b"], body
    # The Kantata face agrees: the option is a deleted choice.
    choice_id = await db.fetchval("SELECT id FROM custom_field_choices WHERE uuid = $1::uuid", a["id"])
    status, body, _ = await stack.request("GET", f"{CHOICES}/{choice_id}", workspace)
    error_of(body, status, 404, "not_found")


async def test_choices_need_a_key(stack: Stack, workspace: Workspace) -> None:
    stranger = Workspace(workspace.id, workspace.slug, "not-a-key")
    for method, path in (("GET", CHOICES), ("POST", CHOICES), ("GET", f"{CHOICES}/1"), ("DELETE", f"{CHOICES}/1")):
        status, body, _ = await stack.request(method, path, stranger, json={} if method == "POST" else None)
        assert status == 401, (method, path, body)
        status, body, _ = await stack.request(method, path, None, json={} if method == "POST" else None)
        assert status == 401, (method, path, body)
