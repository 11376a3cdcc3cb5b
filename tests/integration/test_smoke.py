"""The shortest path through everything: define a field, write a value, see the event."""

from __future__ import annotations

from support import EventCollector, Stack, Workspace


async def test_write_is_applied_and_announced(stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace, json={
        "custom_field_value": {"subject_type": "Story", "subject_id": 7, "custom_field_id": int(field["id"]),
                               "value": 13}})
    assert status == 200, body
    value = next(iter(body["custom_field_values"].values()))
    assert value["value"] == 13 and value["sequence"] == 1 and value["subject_id"] == 7
    [event] = await events.wait_for_count(1)
    assert event["type"] == "cfv.value.created.v1"
    assert event["data"]["after"] == {"id": int(value["id"]), "value": 13,
        "external_id": None, "external_source": None}
