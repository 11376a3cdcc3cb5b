"""Reading, updating and deleting values by id on the Kantata face: the main paths end to end."""

from __future__ import annotations

from typing import Any

from support import EventCollector, Stack, Workspace
from support.kantata import VALUES, item, values_of, write


async def test_read_update_delete_a_value(stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    colour = await stack.create_field(workspace, name="Colour", subject_type="Story", value_type="multi",
                                      choices=["red", "green", "blue"])
    red, green, blue = (int(c["id"]) for c in colour["choices"])
    status, body, _ = await write(stack, workspace, {**item(colour, [red]), "origin": "jira"})
    assert status == 200, body
    [first] = values_of(body)
    assert first["origin"] == "jira"

    status, body, headers = await stack.request("GET", f"{VALUES}/{first['id']}?include=custom_field,"
                                                "selected_choices,subject", workspace)
    assert status == 200, body
    assert {k.lower(): v for k, v in headers.items()}["etag"] == '"1"'
    assert set(body["custom_field_choices"]) == {str(red)} and set(body["custom_fields"]) == {colour["id"]}
    assert body["stories"] == {"7": {"id": "7", "type": "Story"}}

    edit: dict[str, Any] = {"custom_field_value": {"value": {"add": [green, blue], "remove": [red]}}}
    status, body, headers = await stack.request("PUT", f"{VALUES}/{first['id']}", workspace, json=edit,
                                                headers={"If-Match": '"1"'})
    assert status == 200, body
    [second] = values_of(body)
    assert second["value"] == [green, blue] and {k.lower(): v for k, v in headers.items()}["etag"] == '"2"'

    status, body, _ = await stack.request("DELETE", f"{VALUES}/{second['id']}", workspace,
                                          headers={"If-Match": '"1"'})
    assert status == 412, body
    status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Story", workspace)
    assert status == 200 and body["count"] == 1, body

    status, body, _ = await stack.request("DELETE", f"{VALUES}?ids={second['id']},999", workspace)
    assert status == 404 and [e["id"] for e in body["errors"]] == ["999"], body
    status, body, _ = await stack.request("DELETE", f"{VALUES}?ids={second['id']}", workspace)
    assert status == 204, body
    status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Story", workspace)
    assert status == 200 and body["count"] == 0, body

    status, body, _ = await stack.request(
        "GET", f"{VALUES}/history?subject_type=Story&subject_id=7&custom_field_id={colour['id']}", workspace)
    assert status == 200, body
    versions = [body["custom_field_value_versions"][r["id"]] for r in body["results"]]
    assert [(v["change"], v["sequence"], v["value"]) for v in versions] == [
        ("created", 1, [red]), ("replaced", 2, [green, blue]), ("deleted", 3, None)]
    received = await events.wait_for_count(3)
    assert [e["type"] for e in received] == ["cfv.value.created.v1", "cfv.value.replaced.v1",
                                             "cfv.value.deleted.v1"]
    assert received[0]["data"]["origin"] == "jira" and received[1]["data"]["origin"] is None


async def test_pages_read_as_of_the_first_agree_whatever_is_written_meanwhile(stack: Stack,
                                                                             workspace: Workspace) -> None:
    size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="number")
    status, body, _ = await write(stack, workspace, *[item(size, n, subject_id=n) for n in range(1, 31)])
    assert status == 200, body
    original = {v["id"]: v["value"] for v in values_of(body)}

    status, first, _ = await stack.request("GET", f"{VALUES}?subject_type=Story&per_page=10", workspace)
    assert status == 200, first
    as_of = first["meta"]["as_of"]
    # Meanwhile: every value on the first page is replaced (moving it to the end of the order), and two of the
    # later ones are deleted. Read live, the next pages would repeat some values and hide others.
    shown = [first["custom_field_values"][r["id"]] for r in first["results"]]
    status, body, _ = await write(stack, workspace, *[item(size, 100 + v["value"], subject_id=v["subject_id"])
                                                       for v in shown])
    assert status == 200, body
    later = [r["id"] for r in first["results"]]
    remaining = [i for i in original if i not in later]
    status, body, _ = await stack.request("DELETE", f"{VALUES}?ids={remaining[0]},{remaining[-1]}", workspace)
    assert status == 204, body

    seen = [r["id"] for r in first["results"]]
    for page in (2, 3, 4):
        status, body, _ = await stack.request("GET", f"{VALUES}?subject_type=Story&per_page=10&page={page}&"
                                              f"as_of={as_of.replace('+', '%2B')}", workspace)
        assert status == 200 and body["count"] == 30 and body["meta"]["as_of"] == as_of, body
        seen += [r["id"] for r in body["results"]]
        assert all(body["custom_field_values"][r["id"]]["value"] == original[r["id"]]
                   for r in body["results"])
    assert sorted(seen, key=int) == sorted(original, key=int)  # each value once, as it stood
