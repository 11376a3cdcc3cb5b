"""Change events of writes made through the Kantata face: CloudEvents 1.0 on ``cfv.events``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from cfv_schemas.events import CONTENT_TYPE, ChangeEvent
from support import EventCollector, Stack, Workspace, add_users
from support.kantata import item, key_id, values_of, write


async def test_create_then_replace_events(stack: Stack, workspace: Workspace, db: Any,
                                          events: EventCollector) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    red, green, blue = (int(c["id"]) for c in colour["choices"])
    status, body, _ = await write(stack, workspace, item(colour, [red, green], subject_id=7))
    assert status == 200, body
    [first] = values_of(body)
    status, body, _ = await write(stack, workspace, item(colour, [blue], subject_id=7))
    assert status == 200, body
    [second] = values_of(body)

    created, replaced = await events.wait_for_count(2)
    setter = f"key:{await key_id(db, workspace)}"
    field_id = int(colour["id"])
    for event, message, kind in ((created, events.messages[0], "created"), (replaced, events.messages[1], "replaced")):
        parsed = ChangeEvent.model_validate(event)
        assert event["specversion"] == "1.0"
        assert event["type"] == f"cfv.value.{kind}.v1"
        assert event["source"] == "/workspaces/acme"
        assert event["subject"] == f"Story/7/custom_fields/{field_id}"
        assert event["datacontenttype"] == "application/json"
        assert message.routing_key == f"acme.Story.{field_id}.{kind}"
        assert message.content_type == CONTENT_TYPE == "application/cloudevents+json"
        assert message.message_id == event["id"] and message.type == event["type"]
        assert parsed.time.tzinfo is not None
        data = event["data"]
        assert (data["workspace_id"], data["workspace"]) == (workspace.id, "acme")
        assert (data["subject_type"], data["subject_id"], data["custom_field_id"]) == ("Story", "7", field_id)
        assert data["value_type"] == "multi" and data["setter"] == setter

    assert created["data"]["sequence"] == 1 and replaced["data"]["sequence"] == 2
    assert created["data"]["before"] is None
    assert created["data"]["after"] == {"id": int(first["id"]), "value": [red, green],
        "external_id": None, "external_source": None}
    assert replaced["data"]["before"] == {"id": int(first["id"]), "value": [red, green],
        "external_id": None, "external_source": None}
    assert replaced["data"]["after"] == {"id": int(second["id"]), "value": [blue],
        "external_id": None, "external_source": None}
    assert created["data"]["operation_id"] == first["operation_id"]
    assert replaced["data"]["operation_id"] == second["operation_id"]
    assert created["id"] != replaced["id"]
    assert datetime.fromisoformat(created["time"]) <= datetime.fromisoformat(replaced["time"])

    published = await db.fetch("SELECT event_id, routing_key, published_at FROM outbox "
                               "WHERE type LIKE 'cfv.value.%' ORDER BY position")  # not the definition events
    assert [(str(r["event_id"]), r["routing_key"]) for r in published] == [
        (created["id"], f"acme.Story.{field_id}.created"), (replaced["id"], f"acme.Story.{field_id}.replaced")]
    assert all(r["published_at"] is not None for r in published)


async def test_bulk_events_follow_item_order_with_gapless_sequences(stack: Stack, workspace: Workspace,
                                                                    events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, item(points, 1), item(points, 2, subject_id=8),
                                  item(points, 3))
    assert status == 200, body
    values = values_of(body)
    received = await events.wait_for_count(3)
    for event in received:
        ChangeEvent.model_validate(event)
    assert [(e["data"]["subject_id"], e["data"]["sequence"], e["data"]["after"]["value"]) for e in received] == [
        ("7", 1, 1), ("8", 1, 2), ("7", 2, 3)]
    assert [m.routing_key.rsplit(".", 1)[1] for m in events.messages] == ["created", "created", "replaced"]
    assert received[2]["data"]["before"] == {"id": int(values[0]["id"]), "value": 1,
        "external_id": None, "external_source": None}
    assert {e["data"]["operation_id"] for e in received} == {values[0]["operation_id"]}


async def test_routing_key_names_the_workspace_slug_subject_and_field(stack: Stack, workspace: Workspace,
                                                                      other_workspace: Workspace,
                                                                      events: EventCollector,
                                                                      db: Any) -> None:
    work_item = str(uuid.uuid4())
    ours = await stack.create_field(workspace, name="Owner", subject_type="WorkItem", value_type="relation",
                                    relation_target="user")
    theirs = await stack.create_field(other_workspace, name="Cost", subject_type="Estimate", value_type="currency")
    user = "0b0e3a52-7c8f-4a63-9a8e-5d5f3f3c2a11"  # around work items, users are named by UUID too
    await add_users(db, workspace.id, uuids=[user])
    status, body, _ = await write(stack, workspace, item(ours, user, subject_id=work_item))
    assert status == 200, body
    status, body, _ = await write(stack, other_workspace, item(theirs, [10, "EUR"], subject_id=3))
    assert status == 200, body
    await events.wait_for_count(2)
    by_key = {m.routing_key: e for m, e in zip(events.messages, events.events, strict=True)}
    assert set(by_key) == {f"acme.WorkItem.{ours['id']}.created", f"globex.Estimate.{theirs['id']}.created"}
    ours_event = by_key[f"acme.WorkItem.{ours['id']}.created"]
    assert ours_event["subject"] == f"WorkItem/{work_item}/custom_fields/{ours['id']}"
    assert ours_event["data"]["after"]["value"] == [user]
    theirs_event = ChangeEvent.model_validate(by_key[f"globex.Estimate.{theirs['id']}.created"])
    assert theirs_event.source == "/workspaces/globex" and theirs_event.data.workspace_id == other_workspace.id
    assert theirs_event.data.after is not None and theirs_event.data.after.value == [10, "EUR"]


async def test_refused_writes_announce_nothing(stack: Stack, workspace: Workspace,
                                               events: EventCollector) -> None:
    points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, _, _ = await write(stack, workspace, item(points, 1), item(points, "x"))
    assert status == 422
    status, _, _ = await write(stack, workspace, {**item(points, 1), "custom_field_id": 4242})
    assert status == 404
    status, body, _ = await write(stack, workspace, item(points, 2))
    assert status == 200, body
    [event] = await events.wait_for_count(1)
    assert event["data"]["after"]["value"] == 2 and event["data"]["sequence"] == 1
    await asyncio.sleep(0.3)
    assert len(events.messages) == 1
