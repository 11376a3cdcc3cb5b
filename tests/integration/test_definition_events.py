"""Definition events (issue 11): creating, changing and deleting fields, choices, sets, Plane projects, properties
and options announces ``cfv.{kind}.{created|updated|deleted}.v1`` with before/after, in the transaction of the
change, through the event log (positions in commit order, between the value events), the relay (routing key
``{slug}.definition.{kind}.{id}.{change}``) and the replay API (each field's read_access)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cfv_schemas.events import ChangeEvent, ChoiceEvent, FieldEvent, ProjectEvent, SetEvent
from pydantic import BaseModel
from support import EventCollector, Stack, Workspace, collecting
from support.kantata import item, write
from support.plane import WORK_ITEM, new_project, projects_path

MODELS: dict[str, type[BaseModel]] = {"field": FieldEvent, "property": FieldEvent, "choice": ChoiceEvent,
                                      "option": ChoiceEvent, "set": SetEvent, "project": ProjectEvent,
                                      "value": ChangeEvent}


@pytest.fixture
async def definitions(amqp_url: str) -> AsyncIterator[EventCollector]:
    """A consumer of the definition events of this test's virtual host (``*.definition.#``)."""
    async with collecting(amqp_url, "*.definition.#") as collector:
        yield collector


async def _log(stack: Stack, workspace: Workspace, query: str = "") -> list[dict[str, Any]]:
    """The whole event log the caller may read, checked against the wire models."""
    status, body, _ = await stack.request("GET", "/api/v1/events?limit=1000" + query, workspace)
    assert status == 200, body
    for event in body["events"]:
        MODELS[event["type"].split(".")[1]].model_validate(event)
    return body["events"]  # type: ignore[no-any-return]


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    """``kind.change`` of each event (``cfv.field.created.v1`` -> ``field.created``)."""
    return [".".join(e["type"].split(".")[1:3]) for e in events]


async def _ok(stack: Stack, method: str, path: str, workspace: Workspace, json: Any = None,
              status: int = 200) -> Any:
    got, body, _ = await stack.request(method, path, workspace, json=json)
    assert got == status, body
    return body


async def test_kantata_fields_choices_and_sets_are_announced_in_commit_order(
        stack: Stack, workspace: Workspace, events: EventCollector, definitions: EventCollector) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green"])
    field_id = int(colour["id"])
    red = int(colour["choices"][0]["id"])
    body = await _ok(stack, "PATCH", f"/api/v1/custom_fields/{field_id}", workspace,
                     {"custom_field": {"name": "Shade", "add_choices": ["blue"]}})
    assert body["custom_fields"][str(field_id)]["name"] == "Shade"
    body = await _ok(stack, "POST", "/api/v1/custom_field_choices", workspace,
                     {"custom_field_choice": {"custom_field_id": field_id, "label": "violet"}}, 201)
    violet = next(iter(body["custom_field_choices"]))
    await _ok(stack, "PATCH", f"/api/v1/custom_field_choices/{violet}", workspace,
              {"custom_field_choice": {"label": "purple"}})
    await _ok(stack, "DELETE", f"/api/v1/custom_field_choices/{violet}", workspace, status=204)
    body = await _ok(stack, "POST", "/api/v1/custom_field_sets", workspace, {"custom_field_set": {
        "name": "Look", "subject_type": "Story", "custom_field_ids": [field_id]}}, 201)
    set_id = next(iter(body["custom_field_sets"]))
    await _ok(stack, "PATCH", f"/api/v1/custom_field_sets/{set_id}", workspace,
              {"custom_field_set": {"name": "Appearance"}})
    await _ok(stack, "DELETE", f"/api/v1/custom_field_sets/{set_id}", workspace, status=204)
    status, body, _ = await write(stack, workspace, item(colour, [red], subject_id=7))
    assert status == 200, body
    await _ok(stack, "DELETE", f"/api/v1/custom_fields/{field_id}", workspace, status=204)

    log = await _log(stack, workspace)
    assert _kinds(log) == [
        "field.created", "choice.created", "choice.created",  # the field, then its choices
        "field.updated", "choice.created",
        "choice.created", "choice.updated", "choice.deleted",
        "set.created", "set.updated", "set.deleted",
        "value.created",
        "value.deleted", "field.deleted",  # through the worker: its values, then the field, in one transaction
    ]
    assert [e["position"] for e in log] == list(range(1, len(log) + 1))
    created, _, _, updated = log[:4]
    assert created["data"]["before"] is None and created["data"]["after"]["name"] == "Colour"
    assert created["data"]["custom_field_id"] == field_id and created["data"]["subject_type"] == "Story"
    assert created["data"]["after"]["value_type"] == "multi" and created["data"]["project_id"] is None
    assert [e["data"]["after"]["label"] for e in log[1:3]] == ["red", "green"]
    assert (updated["data"]["before"]["name"], updated["data"]["after"]["name"]) == ("Colour", "Shade")
    assert updated["subject"] == f"custom_fields/{field_id}" and updated["data"]["actor"].startswith("key:")
    relabelled = log[6]["data"]
    assert (relabelled["before"]["label"], relabelled["after"]["label"]) == ("violet", "purple")
    assert log[7]["data"]["before"]["label"] == "purple" and log[7]["data"]["after"] is None
    assert log[8]["data"]["after"]["custom_field_ids"] == [field_id] and log[8]["data"]["custom_field_id"] is None
    assert log[9]["data"]["after"]["name"] == "Appearance" and log[10]["data"]["after"] is None
    value_deleted, field_deleted = log[-2:]
    assert field_deleted["data"]["before"]["name"] == "Shade" and field_deleted["data"]["after"] is None
    assert field_deleted["data"]["operation_id"] == value_deleted["data"]["operation_id"] is not None
    assert field_deleted["correlationid"]  # the request's id, as the value events carry it

    # The relay publishes them: definition events on their own routing keys, value events on theirs.
    announced = [e for e in log if not e["type"].startswith("cfv.value.")]
    received = await definitions.wait_for_count(len(announced))
    assert received == announced
    assert [m.routing_key for m in definitions.messages][:4] == [
        f"acme.definition.field.{field_id}.created", f"acme.definition.choice.{red}.created",
        f"acme.definition.choice.{red + 1}.created", f"acme.definition.field.{field_id}.updated"]
    assert definitions.messages[8].routing_key == f"acme.definition.set.{set_id}.created"
    assert all(m.type == e["type"] and m.message_id == e["id"] for m, e in zip(definitions.messages, received,
                                                                               strict=True))
    values = await events.wait_for_count(2)
    assert [e["type"] for e in values] == ["cfv.value.created.v1", "cfv.value.deleted.v1"]  # values only

    # The replay API filters them as it filters values.
    assert _kinds(await _log(stack, workspace, "&type=cfv.field.created.v1,cfv.field.deleted.v1")) == [
        "field.created", "field.deleted"]
    assert len(await _log(stack, workspace, f"&custom_field_id={field_id}")) == len(log) - 3  # not the set's


async def test_plane_projects_properties_and_options_are_announced_as_plane_s(
        stack: Stack, workspace: Workspace, definitions: EventCollector) -> None:
    plane = await new_project(stack, workspace)
    prop = await plane.create_property(display_name="Severity", property_type="OPTION")
    high = await plane.create_option(prop, "High", is_default=True)
    low = await plane.create_option(prop, "Low", is_default=True)  # unmarks High
    status, body, _ = await plane.request("POST", projects_path(workspace), {"name": "Again", "identifier": "WEB"})
    assert status == 409, body  # a refused change announces nothing
    await _ok(stack, "PATCH", plane.project, workspace, {"name": "Website"})
    await _ok(stack, "PATCH", plane.property_path(prop["id"]), workspace, {"description": "how bad"})
    await _ok(stack, "PATCH", plane.property_path(prop["id"]) + f"options/{low['id']}/", workspace,
              {"name": "Minor"})
    log = await _log(stack, workspace)
    field_id = log[1]["data"]["custom_field_id"]
    # The same property changed through the Kantata face is still announced as a property.
    await _ok(stack, "PATCH", f"/api/v1/custom_fields/{field_id}", workspace, {"custom_field": {"name": "Impact"}})
    await _ok(stack, "DELETE", plane.property_path(prop["id"]) + f"options/{high['id']}/", workspace, status=204)
    status, body, _ = await plane.write(prop, low["id"])
    assert status == 201, body
    await _ok(stack, "DELETE", plane.project, workspace, status=204)

    log = await _log(stack, workspace)
    assert _kinds(log) == [
        "project.created", "property.created", "option.created", "option.created", "option.updated",
        "project.updated", "property.updated", "option.updated", "property.updated", "option.deleted",
        "value.created",
        "value.deleted", "property.deleted", "project.deleted",  # the project's deletion, through the worker
    ]
    assert [e["position"] for e in log] == list(range(1, len(log) + 1))
    project, created = log[0], log[1]
    assert project["data"]["after"]["id"] == plane.project_id and project["data"]["after"]["identifier"] == "WEB"
    assert project["subject"] == f"projects/{plane.project_id}" and project["data"]["custom_field_id"] is None
    after = created["data"]["after"]
    assert (after["uuid"], after["project_id"], after["name"]) == (prop["id"], plane.project_id, "Severity")
    assert created["data"]["project_id"] == plane.project_id and created["data"]["subject_type"] == "WorkItem"
    unmarked = log[4]["data"]
    assert unmarked["after"]["uuid"] == high["id"]
    assert (unmarked["before"]["is_default"], unmarked["after"]["is_default"]) == (True, False)
    assert log[5]["data"]["before"]["name"] == "Project WEB" and log[5]["data"]["after"]["name"] == "Website"
    assert log[8]["data"]["after"]["name"] == "Impact"
    assert log[9]["data"]["before"]["uuid"] == high["id"] and log[9]["data"]["after"] is None
    assert log[10]["data"]["subject_id"] == WORK_ITEM
    deleted_property, deleted_project = log[-2:]
    assert deleted_property["data"]["before"]["uuid"] == prop["id"]
    assert deleted_project["data"]["before"]["name"] == "Website" and deleted_project["data"]["after"] is None
    assert deleted_project["data"]["operation_id"] == deleted_property["data"]["operation_id"] is not None
    received = await definitions.wait_for_count(len(log) - 2)
    assert [m.routing_key for m in definitions.messages][:2] == [
        f"acme.definition.project.{plane.project_id}.created", f"acme.definition.property.{field_id}.created"]
    assert received == [e for e in log if not e["type"].startswith("cfv.value.")]


async def _reader(stack: Stack, workspace: Workspace, role: str, project: str | None = None) -> Workspace:
    """A user of ``role`` (a collaborator of ``project``, if given) and a key of theirs."""
    body = await _ok(stack, "POST", "/api/v1/users", workspace, {"user": {
        "name": f"A {role}", "email": f"{role}@example.com", "account_role": role}}, 201)
    user = next(iter(body["users"]))
    if project is not None:
        await _ok(stack, "PUT", f"/api/v1/users/{user}/memberships/{project}", workspace,
                  {"permission": "project_collaboration"}, 201)
    body = await _ok(stack, "POST", f"/api/v1/users/{user}/api_keys", workspace, {}, 201)
    return Workspace(workspace.id, workspace.slug, next(iter(body["api_keys"].values()))["key"])


async def test_the_replay_api_shows_a_field_s_definition_events_to_its_readers_only(
        stack: Stack, workspace: Workspace) -> None:
    shared = await stack.create_field(workspace, name="Level", subject_type="User", value_type="number",
                                      read_access="account_collaboration")
    await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="number",
                             read_access="account_admin", write_access="account_admin")
    await _ok(stack, "POST", "/api/v1/custom_field_sets", workspace, {"custom_field_set": {
        "name": "People", "subject_type": "User", "custom_field_ids": [int(shared["id"])]}}, 201)
    plane = await new_project(stack, workspace)
    await plane.create_property(display_name="Severity", property_type="TEXT")
    other = await new_project(stack, workspace, "APP")
    await other.create_property(display_name="Secret", property_type="TEXT")

    everything = await _log(stack, workspace)
    assert _kinds(everything) == ["field.created", "field.created", "set.created", "project.created",
                                  "property.created", "project.created", "property.created"]
    member = await _reader(stack, workspace, "account_collaboration", plane.project_id)
    seen = await _log(stack, member)
    # Not the cost's (account administrators only), nor the other project's property (not a member there).
    assert [e["position"] for e in seen] == [1, 3, 4, 5, 6]
    assert seen[0]["data"]["custom_field_id"] == int(shared["id"])
    assert seen[3]["data"]["project_id"] == plane.project_id
