"""Consistency of the Plane face with the core: concurrent writes, change events, one store behind both faces,
idempotency, and a value deleted then written again.

A Plane property is a core custom field of ``WorkItem`` subjects; these tests check that what the Plane face
writes is stored, numbered and announced exactly as any other core value, and that the Kantata face sees (and
writes) the very same values.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

from cfv.gateway.plane_wire import VALUE_NAMESPACE
from cfv_schemas.events import ChangeEvent
from support import EventCollector, Stack, Workspace, add_users
from support.kantata import FIELDS, counts, item, key_id, values_of, write
from support.plane import WORK_ITEM, a_uuid, new_project

CONCURRENT = 20


# --- helpers ------------------------------------------------------------------------------------------


async def field_id(db: Any, prop: dict[str, Any]) -> int:
    """The core (integer) id of a property, named on the Plane face by its UUID."""
    found = await db.fetchval("SELECT id FROM custom_fields WHERE uuid = $1", uuid.UUID(prop["id"]))
    assert found is not None, prop
    return int(found)


async def choice_id(db: Any, option: dict[str, Any]) -> int:
    """The core (integer) id of an option, named on the Plane face by its UUID."""
    found = await db.fetchval("SELECT id FROM custom_field_choices WHERE uuid = $1", uuid.UUID(option["id"]))
    assert found is not None, option
    return int(found)


async def history(db: Any, field: int, work_item: str = WORK_ITEM) -> list[Any]:
    """The value versions of one key, by sequence."""
    rows: list[Any] = await db.fetch(
        "SELECT id, seq, value, external_id, external_source, setter, operation_id FROM value_versions "
        "WHERE subject_type = 'WorkItem' AND subject_id = $1 AND custom_field_id = $2 ORDER BY seq",
        work_item, field)
    return rows


async def current_rows(db: Any, field: int) -> list[Any]:
    """Every current_values row of a field."""
    rows: list[Any] = await db.fetch(
        "SELECT subject_type, subject_id, seq, value_id, value, external_id, external_source, operation_id "
        "FROM current_values WHERE custom_field_id = $1", field)
    return rows


def plane_id(version_id: int, item_value: str | None = None) -> str:
    """The UUID the Plane face names a core value by (one per item for a multi property)."""
    name = str(version_id) if item_value is None else f"{version_id}/{item_value}"
    return str(uuid.uuid5(VALUE_NAMESPACE, name))


async def no_more_events(events: EventCollector, expected: int) -> None:
    """Give the relay time to publish anything unexpected, then check nothing more came."""
    await asyncio.sleep(0.6)
    assert len(events.messages) == expected, [m.routing_key for m in events.messages]


# --- 1. concurrency -----------------------------------------------------------------------------------


async def test_concurrent_first_writes_of_a_single_value_make_one_value_and_twenty_versions(
        stack: Stack, workspace: Workspace, db: Any) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="TEXT", display_name="Summary")
    field = await field_id(db, prop)
    written = [f"value-{n}" for n in range(CONCURRENT)]

    answers = await asyncio.gather(*(plane.write(prop, value) for value in written))

    statuses = [status for status, _, _ in answers]
    assert all(status in (200, 201) for status in statuses), answers
    assert statuses.count(201) == 1 and statuses.count(200) == CONCURRENT - 1, statuses
    for (_, body, _), value in zip(answers, written, strict=True):
        assert body["value"] == value and body["property_id"] == prop["id"] and body["issue_id"] == WORK_ITEM

    versions = await history(db, field)
    assert [v["seq"] for v in versions] == list(range(1, CONCURRENT + 1))
    assert sorted(v["value"] for v in versions) == sorted(written)  # each write applied exactly once
    assert len({v["id"] for v in versions}) == CONCURRENT
    # Each answer names its own version; the one answered 201 is the first in sequence order.
    answer_ids = {body["id"]: status for status, body, _ in answers}
    assert set(answer_ids) == {plane_id(v["id"]) for v in versions}
    assert answer_ids[plane_id(versions[0]["id"])] == 201

    [current] = await current_rows(db, field)
    last = versions[-1]
    assert (current["subject_id"], current["seq"]) == (WORK_ITEM, CONCURRENT)
    assert (current["value_id"], current["value"]) == (last["id"], last["value"])
    assert current["operation_id"] == last["operation_id"]
    status, read, _ = await plane.request("GET", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 200, read
    assert read["value"] == last["value"] and read["id"] == plane_id(last["id"])


async def test_concurrent_first_writes_of_a_multi_option_keep_exactly_one_written_set(
        stack: Stack, workspace: Workspace, db: Any) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    field = await field_id(db, prop)
    options = [await plane.create_option(prop, name) for name in ("a", "b", "c", "d", "e")]
    ids = {o["id"]: await choice_id(db, o) for o in options}
    # Twenty different sets of the five options: every version must hold exactly the set one request sent,
    # so a write merged into what was there (a union) would be seen.
    sets = [list(combo) for size in (1, 2, 3) for combo in itertools.combinations([o["id"] for o in options], size)]
    sets = sets[:CONCURRENT]
    assert len(sets) == CONCURRENT and len({frozenset(s) for s in sets}) == CONCURRENT

    answers = await asyncio.gather(*(plane.write(prop, chosen) for chosen in sets))

    statuses = [status for status, _, _ in answers]
    assert statuses.count(201) == 1 and statuses.count(200) == CONCURRENT - 1, answers
    for (_, body, _), chosen in zip(answers, sets, strict=True):
        assert [v["value"] for v in body] == chosen

    versions = await history(db, field)
    assert [v["seq"] for v in versions] == list(range(1, CONCURRENT + 1))
    as_core = sorted(sorted(ids[o] for o in chosen) for chosen in sets)
    assert sorted(sorted(v["value"]) for v in versions) == as_core  # stored as choice ids, each once

    [current] = await current_rows(db, field)
    last = versions[-1]
    assert current["seq"] == CONCURRENT and current["value_id"] == last["id"]
    assert current["value"] == last["value"]
    assert sorted(current["value"]) in as_core  # exactly one written set, never a union
    status, read, _ = await plane.request("GET", plane.values_path(WORK_ITEM, prop["id"]))
    assert status == 200, read
    by_id = {core: option for option, core in ids.items()}
    assert [v["value"] for v in read] == [by_id[c] for c in last["value"]]
    assert [v["id"] for v in read] == [plane_id(last["id"], by_id[c]) for c in last["value"]]


# --- 2. change events of Plane writes -----------------------------------------------------------------


async def test_each_plane_write_announces_its_change(stack: Stack, workspace: Workspace, db: Any,
                                                     events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="TEXT", display_name="Summary")
    field = await field_id(db, prop)
    values = plane.values_path(WORK_ITEM, prop["id"])
    other_item = a_uuid()

    status, created, _ = await plane.write(prop, "one", external_id="J-1", external_source="jira")
    assert status == 201, created
    status, elsewhere, _ = await plane.write(prop, "other", work_item=other_item)  # another key, interleaved
    assert status == 201, elsewhere
    status, replaced, _ = await plane.write(prop, "two", external_id="J-2", external_source="jira")
    assert status == 200, replaced
    status, patched, _ = await plane.write(prop, "three", method="PATCH", external_id="J-3",
                                           external_source="linear")
    assert status == 200, patched
    before_refusal = await counts(db)
    status, body, _ = await plane.write(prop, 42)  # a TEXT property takes text only
    assert status == 400, body
    assert "value" in body
    assert await counts(db) == before_refusal
    status, body, _ = await plane.request("DELETE", values)
    assert status == 204, body

    received = await events.wait_for_count(5)
    await no_more_events(events, 5)
    for event in received:
        ChangeEvent.model_validate(event)
    keys = [m.routing_key for m in events.messages]
    prefix = f"acme.WorkItem.{field}"
    assert keys == [f"{prefix}.created", f"{prefix}.created", f"{prefix}.replaced", f"{prefix}.replaced",
                    f"{prefix}.deleted"]
    ours = [e for e in received if e["data"]["subject_id"] == WORK_ITEM]
    theirs = [e for e in received if e["data"]["subject_id"] == other_item]
    assert [e["data"]["sequence"] for e in ours] == [1, 2, 3, 4]  # gapless per key
    assert [e["data"]["sequence"] for e in theirs] == [1]
    assert [e["type"] for e in ours] == ["cfv.value.created.v1", "cfv.value.replaced.v1",
                                         "cfv.value.replaced.v1", "cfv.value.deleted.v1"]
    setter = f"key:{await key_id(db, workspace)}"
    for event in received:
        data = event["data"]
        assert event["subject"] == f"WorkItem/{data['subject_id']}/custom_fields/{field}"
        assert (data["subject_type"], data["custom_field_id"], data["value_type"]) == ("WorkItem", field, "string")
        assert data["setter"] == setter

    versions = await history(db, field)
    assert [v["seq"] for v in versions] == [1, 2, 3, 4]
    one, two, three = ({"id": v["id"], "value": v["value"], "external_id": v["external_id"],
                        "external_source": v["external_source"]} for v in versions[:3])
    assert one == {"id": one["id"], "value": "one", "external_id": "J-1", "external_source": "jira"}
    assert two == {"id": two["id"], "value": "two", "external_id": "J-2", "external_source": "jira"}
    assert three == {"id": three["id"], "value": "three", "external_id": "J-3", "external_source": "linear"}
    assert versions[3]["value"] is None  # the delete is a version with no value
    assert [plane_id(v["id"]) for v in versions[:3]] == [created["id"], replaced["id"], patched["id"]]

    first, second, third, deleted = ours
    assert first["data"]["before"] is None and first["data"]["after"] == one
    assert second["data"]["before"] == one and second["data"]["after"] == two
    assert third["data"]["before"] == two and third["data"]["after"] == three
    assert deleted["data"]["before"] == three and deleted["data"]["after"] is None
    assert theirs[0]["data"]["after"]["value"] == "other" and theirs[0]["data"]["before"] is None
    assert [str(v["operation_id"]) for v in versions] == [e["data"]["operation_id"] for e in ours]

    [gone, kept] = sorted(await current_rows(db, field), key=lambda r: r["subject_id"] != WORK_ITEM)
    assert (gone["seq"], gone["value"], gone["value_id"]) == (4, None, None)
    assert (kept["subject_id"], kept["seq"], kept["value"]) == (other_item, 1, "other")


async def test_option_events_carry_choice_ids_and_refused_writes_announce_nothing(
        stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", display_name="Priority")
    field = await field_id(db, prop)
    high = await plane.create_option(prop, "high")
    low = await plane.create_option(prop, "low")
    other = await plane.create_property(property_type="OPTION", display_name="Elsewhere")
    foreign = await plane.create_option(other, "foreign")

    status, body, _ = await plane.write(prop, high["id"], external_id="P-1", external_source="plane")
    assert status == 201 and body["value"] == high["id"], body
    for refused in (a_uuid(), foreign["id"], [high["id"], low["id"]], "not-a-uuid", None):
        status, body, _ = await plane.write(prop, refused)
        assert status == 400, (refused, body)
    status, body, _ = await plane.write(prop, low["id"], method="PATCH")
    assert status == 200 and body["value"] == low["id"], body
    assert await counts(db) == (2, 1, 2)

    received = await events.wait_for_count(2)
    await no_more_events(events, 2)
    assert [m.routing_key for m in events.messages] == [f"acme.WorkItem.{field}.created",
                                                        f"acme.WorkItem.{field}.replaced"]
    created, replaced = received
    high_id, low_id = await choice_id(db, high), await choice_id(db, low)
    assert created["data"]["value_type"] == "single"
    assert created["data"]["after"]["value"] == [high_id]
    assert (created["data"]["after"]["external_id"], created["data"]["after"]["external_source"]) == (
        "P-1", "plane")
    assert replaced["data"]["before"] == created["data"]["after"]
    assert replaced["data"]["after"]["value"] == [low_id]
    assert [e["data"]["sequence"] for e in received] == [1, 2]


# --- 3. one store, two faces --------------------------------------------------------------------------


async def kantata_fields(stack: Stack, workspace: Workspace) -> dict[str, dict[str, Any]]:
    """The workspace's fields as the Kantata face lists them, by name."""
    status, body, _ = await stack.request("GET", f"{FIELDS}?per_page=200", workspace)
    assert status == 200, body
    return {f["name"]: f for f in body["custom_fields"].values()}


async def test_kantata_writes_are_read_on_the_plane_face(stack: Stack, workspace: Workspace, db: Any) -> None:
    plane = await new_project(stack, workspace)
    priority = await plane.create_property(property_type="OPTION", display_name="Priority")
    high = await plane.create_option(priority, "high")
    low = await plane.create_option(priority, "low")
    tags = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    red = await plane.create_option(tags, "red")
    blue = await plane.create_option(tags, "blue")
    owner = await plane.create_property(property_type="RELATION", relation_type="USER", display_name="Owner")
    blocks = await plane.create_property(property_type="RELATION", relation_type="ISSUE", is_multi=True,
                                         display_name="Blocks")
    points = await plane.create_property(property_type="DECIMAL", display_name="Points")

    listed = await kantata_fields(stack, workspace)
    expected = {"Priority": ("single", None, False), "Tags": ("multi", None, False),
                "Owner": ("relation", "user", False), "Blocks": ("relation", "work_item", True),
                "Points": ("number", None, False)}
    for prop in (priority, tags, owner, blocks, points):
        field = listed[prop["display_name"]]
        assert int(field["id"]) == await field_id(db, prop)
        assert field["subject_type"] == "WorkItem"
        assert (field["value_type"], field["relation_target"], field["relation_multi"]) == expected[
            prop["display_name"]]
    assert [(c["label"], int(c["id"])) for c in listed["Priority"]["choices"]] == [
        ("high", await choice_id(db, high)), ("low", await choice_id(db, low))]
    assert [(c["label"], int(c["id"])) for c in listed["Tags"]["choices"]] == [
        ("red", await choice_id(db, red)), ("blue", await choice_id(db, blue))]

    user, item_a, item_b = a_uuid(), a_uuid(), a_uuid()
    await add_users(db, workspace.id, uuids=[user])
    high_id = int(listed["Priority"]["choices"][0]["id"])
    red_id, blue_id = (int(c["id"]) for c in listed["Tags"]["choices"])
    writes = [item(listed["Priority"], high_id, subject_id=WORK_ITEM),
              item(listed["Tags"], [blue_id, red_id], subject_id=WORK_ITEM),
              item(listed["Owner"], user, subject_id=WORK_ITEM),
              item(listed["Blocks"], [item_a, item_b], subject_id=WORK_ITEM),
              item(listed["Points"], 5, subject_id=WORK_ITEM)]
    status, body, _ = await write(stack, workspace, *writes)
    assert status == 200, body
    stored = values_of(body)
    assert [v["value"] for v in stored] == [[high_id], [blue_id, red_id], [user], [item_a, item_b], 5]
    assert all(v["subject_id"] == WORK_ITEM and v["sequence"] == 1 for v in stored)

    async def read(prop: dict[str, Any]) -> Any:
        status, answer, _ = await plane.request("GET", plane.values_path(WORK_ITEM, prop["id"]))
        assert status == 200, answer
        return answer

    single = await read(priority)
    assert single["value"] == high["id"] and single["value_type"] == "OPTION"
    assert single["id"] == plane_id(int(stored[0]["id"]))
    assert [v["value"] for v in await read(tags)] == [blue["id"], red["id"]]
    assert (await read(owner))["value"] == user
    assert [v["value"] for v in await read(blocks)] == [item_a, item_b]
    assert (await read(points))["value"] == 5
    status, everything, _ = await plane.request("GET", plane.all_values_path(WORK_ITEM))
    assert status == 200, everything
    assert [(v["property_id"], v["value"]) for v in everything] == [
        (priority["id"], high["id"]), (tags["id"], blue["id"]), (tags["id"], red["id"]), (owner["id"], user),
        (blocks["id"], item_a), (blocks["id"], item_b), (points["id"], 5)]

    # The Kantata face may name a choice by its UUID too; it is stored (and answered) as the choice id.
    low_id = await choice_id(db, low)
    status, body, _ = await write(stack, workspace, item(listed["Priority"], low["id"], subject_id=WORK_ITEM))
    assert status == 200, body
    [by_uuid] = values_of(body)
    assert by_uuid["value"] == [low_id] and by_uuid["sequence"] == 2
    assert (await read(priority))["value"] == low["id"]
    status, body, _ = await write(stack, workspace, item(listed["Tags"], [red["id"], blue_id, red_id],
                                                         subject_id=WORK_ITEM))
    assert status == 200, body
    assert values_of(body)[0]["value"] == [red_id, blue_id]  # an id and its UUID are one choice
    assert [v["value"] for v in await read(tags)] == [red["id"], blue["id"]]
    # Another property's option is no choice of this one, by id or by UUID.
    for wrong in (red_id, red["id"]):
        status, body, _ = await write(stack, workspace, item(listed["Priority"], wrong, subject_id=WORK_ITEM))
        assert status == 422, body
    assert (await read(priority))["value"] == low["id"]


async def test_plane_and_kantata_writes_share_one_history(stack: Stack, workspace: Workspace, db: Any,
                                                          events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    red = await plane.create_option(prop, "red")
    blue = await plane.create_option(prop, "blue")
    field = await field_id(db, prop)
    red_id, blue_id = await choice_id(db, red), await choice_id(db, blue)
    kantata_field = {"id": str(field), "subject_type": "WorkItem"}

    status, first, _ = await plane.write(prop, [red["id"]])
    assert status == 201, first
    status, body, _ = await write(stack, workspace, item(kantata_field, [blue_id, red_id], subject_id=WORK_ITEM))
    assert status == 200, body
    [second] = values_of(body)
    assert second["sequence"] == 2 and second["value"] == [blue_id, red_id]
    status, third, _ = await plane.write(prop, [blue["id"]], method="PATCH")
    assert status == 200, third
    status, body, _ = await write(stack, workspace, item(kantata_field, [red_id], subject_id=WORK_ITEM))
    assert status == 200, body
    [fourth] = values_of(body)
    assert fourth["sequence"] == 4

    versions = await history(db, field)
    setter = f"key:{await key_id(db, workspace)}"
    assert [(v["seq"], v["value"], v["setter"]) for v in versions] == [
        (1, [red_id], setter), (2, [blue_id, red_id], setter), (3, [blue_id], setter), (4, [red_id], setter)]
    assert [plane_id(versions[0]["id"], red["id"])] == [v["id"] for v in first]
    assert int(second["id"]) == versions[1]["id"] and int(fourth["id"]) == versions[3]["id"]
    assert [v["id"] for v in third] == [plane_id(versions[2]["id"], blue["id"])]
    assert str(versions[1]["operation_id"]) == second["operation_id"]
    [current] = await current_rows(db, field)
    assert (current["seq"], current["value"], current["value_id"]) == (4, [red_id], versions[3]["id"])

    received = await events.wait_for_count(4)
    assert [e["data"]["sequence"] for e in received] == [1, 2, 3, 4]
    assert [m.routing_key for m in events.messages] == [f"acme.WorkItem.{field}.{kind}" for kind in
                                                        ("created", "replaced", "replaced", "replaced")]
    assert [e["data"]["after"]["value"] for e in received] == [v["value"] for v in versions]
    assert [e["data"]["after"]["id"] for e in received] == [v["id"] for v in versions]


# --- 4. Idempotency-Key on the Plane face --------------------------------------------------------------


async def test_idempotent_plane_post_applies_once_and_a_reused_key_conflicts(
        stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(property_type="TEXT", display_name="Summary")
    field = await field_id(db, prop)
    key = {"Idempotency-Key": "plane-17"}
    path = plane.values_path(WORK_ITEM, prop["id"])
    sent = {"value": "once", "external_id": "J-9", "external_source": "jira"}

    status, first, _ = await plane.request("POST", path, sent, headers=key)
    assert status == 201, first
    status, again, _ = await plane.request("POST", path, sent, headers=key)
    assert status == 201, again
    assert again == first
    assert await counts(db) == (1, 1, 1)
    assert [v["seq"] for v in await history(db, field)] == [1]

    for different in ({**sent, "value": "twice"}, {**sent, "external_id": "J-10"}):
        status, body, _ = await plane.request("POST", path, different, headers=key)
        assert status == 409, body
        assert "Idempotency-Key" in body["error"], body
    status, body, _ = await plane.request("POST", plane.values_path(a_uuid(), prop["id"]), sent, headers=key)
    assert status == 409, body  # the same body on another work item is another request
    status, body, _ = await plane.request("PATCH", path, sent, headers=key)
    assert status == 409, body  # an update is not the create it was first used for
    assert await counts(db) == (1, 1, 1)
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 1

    # The key keeps answering its first result after the value moved on, and applies nothing again.
    status, body, _ = await plane.write(prop, "later")
    assert status == 200, body
    status, again, _ = await plane.request("POST", path, sent, headers=key)
    assert (status, again) == (201, first)
    [current] = await current_rows(db, field)
    assert (current["seq"], current["value"]) == (2, "later")
    await events.wait_for_count(2)
    await no_more_events(events, 2)


# --- 5. deleted, then written again -------------------------------------------------------------------


async def test_a_value_written_after_its_delete_is_created_again_and_its_sequence_goes_on(
        stack: Stack, workspace: Workspace, db: Any, events: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    text = await plane.create_property(property_type="TEXT", display_name="Summary")
    tags = await plane.create_property(property_type="OPTION", is_multi=True, display_name="Tags")
    red = await plane.create_option(tags, "red")
    blue = await plane.create_option(tags, "blue")

    async def cycle(prop: dict[str, Any], first: Any, second: Any, third: Any) -> None:
        path = plane.values_path(WORK_ITEM, prop["id"])
        assert (await plane.write(prop, first))[0] == 201
        assert (await plane.write(prop, second))[0] == 200
        status, body, _ = await plane.request("DELETE", path)
        assert status == 204, body
        status, body, _ = await plane.request("GET", path)
        if prop["is_multi"]:
            assert (status, body) == (200, []), body
        else:
            assert status == 404, body
        status, again, _ = await plane.write(prop, third)
        assert status == 201, again
        status, read, _ = await plane.request("GET", path)
        assert status == 200 and read == again, read

    await cycle(text, "a", "b", "c")
    await cycle(tags, [red["id"]], [red["id"], blue["id"]], [blue["id"]])

    received = await events.wait_for_count(8)
    await no_more_events(events, 8)
    for prop, last_value in ((text, "c"), (tags, [await choice_id(db, blue)])):
        field = await field_id(db, prop)
        versions = await history(db, field)
        assert [v["seq"] for v in versions] == [1, 2, 3, 4]
        assert versions[2]["value"] is None and versions[3]["value"] == last_value
        [current] = await current_rows(db, field)
        assert (current["seq"], current["value"], current["value_id"]) == (4, last_value, versions[3]["id"])
        ours = [(m.routing_key, e) for m, e in zip(events.messages, received, strict=True)
                if e["data"]["custom_field_id"] == field]
        assert [k for k, _ in ours] == [f"acme.WorkItem.{field}.{kind}"
                                        for kind in ("created", "replaced", "deleted", "created")]
        assert [e["data"]["sequence"] for _, e in ours] == [1, 2, 3, 4]
        recreated = ours[3][1]["data"]
        assert recreated["before"] is None and recreated["after"]["value"] == last_value
        assert recreated["after"]["id"] == versions[3]["id"]
