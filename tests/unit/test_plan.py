"""Planning a batch without I/O: what it reads, who owns each operation, and the outcomes and rows it decides."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from cfv.contracts import OUTBOX_CHANNEL, reply_channel
from cfv.domain.changes import KeyState, StoredValue
from cfv.domain.fields import FieldDefinition, SubjectType, ValueType
from cfv.domain.writes import ValueKey
from cfv.store.batches import Deleted, KnownOperation, Loaded, SignerRow
from cfv.worker.plan import BatchPlanner, Plan, claims, reads_of
from cfv_schemas.commands import (
    CommandItem,
    DeleteField,
    DeleteProject,
    RegisterSubjects,
    SubjectPlacement,
    WriteValues,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WS = 1
ADMIN_KEY, REVOKED_KEY, STRANGER_KEY = b"A" * 32, b"R" * 32, b"S" * 32
POINTS = FieldDefinition(1, WS, "Points", SubjectType.STORY, ValueType.NUMBER)
CODE = FieldDefinition(2, WS, "Code", SubjectType.STORY, ValueType.STRING, unique=True)


def write(*items: tuple[int, Any, Any], **extra: Any) -> WriteValues:
    """A write of (field, subject id, value) items by a gateway waiting as "a1"."""
    return WriteValues(id=uuid.uuid4(), workspace_id=WS, accepted_at=NOW, reply_to="a1", **extra, items=[
        CommandItem(subject_type="Story", subject_id=subject, custom_field_id=field, value=value)
        for field, subject, value in items])


def loaded(**changes: Any) -> Loaded:
    base: dict[str, Any] = {
        "known": {}, "memberships": [], "registrations": {}, "slugs": {WS: "acme"}, "heads": {WS: 41},
        "definitions": {POINTS.id: POINTS, CODE.id: CODE}, "states": {}, "ids": list(range(100, 120)),
        "signers": [SignerRow(ADMIN_KEY, 7, WS, 70, "account_admin", True),
                    SignerRow(REVOKED_KEY, 8, WS, 80, "account_admin", False)],
    }
    return Loaded(**(base | changes))


def plan(commands: list[Any], signers: list[bytes] | None = None, **changes: Any) -> Plan:
    signed_by = signers or [ADMIN_KEY] * len(commands)
    reads = reads_of(commands, signed_by)
    planner = BatchPlanner(commands, signed_by, loaded(**changes), reads.keys)
    assert planner.keys_to_read({}) == []
    return planner.plan(NOW, idempotency={})


def test_reads_name_canonical_keys_and_enough_ids() -> None:
    commands = [write((1, 7, 5), (1, "08", 6), (1, "x", 7), (2**70, 9, 1)),
                DeleteField(type="delete_field", id=uuid.uuid4(), workspace_id=2, accepted_at=NOW, custom_field_id=3),
                RegisterSubjects(type="register_subjects", id=uuid.uuid4(), workspace_id=WS, accepted_at=NOW,
                                 subjects=[SubjectPlacement(subject_type="Resource", subject_id=4, project="9")])]
    reads = reads_of(commands, [ADMIN_KEY] * 3)
    assert reads.keys == [(WS, ValueKey(SubjectType.STORY, "7", 1)), (WS, ValueKey(SubjectType.STORY, "8", 1))]
    assert reads.new_ids == 4 and sorted(reads.field_ids) == sorted([1, 1, 1, 2**70, 3])
    assert sorted(reads.workspaces) == [1, 1, 2]
    assert (WS, "Resource", "4") in reads.subjects and (WS, "Story", "7") in reads.subjects


def test_an_operation_belongs_to_its_workspace_and_key() -> None:
    mine, pending, foreign, nobodys, copied = (write((1, 1, 1)) for _ in range(5))
    known = {mine.id: KnownOperation(WS, "succeeded", {"id": str(mine.id)}, ADMIN_KEY),
             pending.id: KnownOperation(WS, "pending", None, ADMIN_KEY),
             foreign.id: KnownOperation(WS, "succeeded", {}, STRANGER_KEY),
             nobodys.id: KnownOperation(WS, "failed", {}, None)}
    found = claims([mine, pending, foreign, nobodys, copied, copied], [ADMIN_KEY] * 5 + [STRANGER_KEY], known)
    assert [c.value for c in found] == ["done", "new", "taken", "new", "new", "taken"]


def test_writes_fold_in_order_into_versions_one_current_row_events_and_notifications() -> None:
    first, second = write((1, 7, 5), (1, 8, 6)), write((1, 7, 9))
    result = plan([first, second], states={WS: {ValueKey(SubjectType.STORY, "8", 1): KeyState(
        StoredValue(3, 1), 4)}})
    assert [o["status"] for o in result.outcomes] == ["succeeded", "succeeded"]
    assert [(v["subject_id"], v["sequence"], v["change"]) for o in result.outcomes for v in o["values"]] == [
        ("7", 1, "created"), ("8", 5, "replaced"), ("7", 2, "replaced")]
    writes = result.writes
    assert [(v[0], v[3], v[5], v[6]) for v in writes.versions] == [(100, "7", 1, 5), (101, "8", 5, 6),
                                                                    (102, "7", 2, 9)]
    assert sorted((c[2], c[4], c[5], c[6]) for c in writes.current) == [("7", 2, 102, 9), ("8", 5, 101, 6)]
    assert [(e[0], e[1], e[3], e[4]) for e in writes.events] == [
        (WS, 42, "cfv.value.created.v1", f"acme.Story.{POINTS.id}.created"),
        (WS, 43, "cfv.value.replaced.v1", f"acme.Story.{POINTS.id}.replaced"),
        (WS, 44, "cfv.value.replaced.v1", f"acme.Story.{POINTS.id}.replaced")]
    assert orjson.loads(writes.events[2][5])["data"]["before"]["id"] == 100
    assert [(o[0], o[2], o[4]) for o in writes.operations] == [(first.id, "succeeded", ADMIN_KEY),
                                                                (second.id, "succeeded", ADMIN_KEY)]
    assert orjson.loads(orjson.dumps(writes.operations[0][3]))["values"][0]["value"] == 5
    channel, payload = writes.notifications[0]
    assert channel == reply_channel("a1") and [o["id"] for o in orjson.loads(payload)] == [str(first.id),
                                                                                         str(second.id)]
    assert writes.notifications[1] == (OUTBOX_CHANNEL, str(WS))


def test_a_refused_command_writes_nothing_but_its_outcome() -> None:
    bad, good = write((1, 7, "not a number"), (1, 8, 2)), write((1, 9, 3))
    result = plan([bad, good])
    assert result.outcomes[0]["status"] == "failed" and result.outcomes[0]["errors"][0]["index"] == 0
    assert [v[3] for v in result.writes.versions] == ["9"]
    assert [(o[0], o[2]) for o in result.writes.operations] == [(bad.id, "failed"), (good.id, "succeeded")]


def test_refused_credentials_settle_only_their_own_keys_operations() -> None:
    revoked, stranger = write((1, 7, 1)), write((1, 8, 1))
    result = plan([revoked, stranger], [REVOKED_KEY, STRANGER_KEY])
    assert [o["errors"][0]["type"] for o in result.outcomes] == ["unauthenticated", "unauthenticated"]
    assert [(u[0], u[3]) for u in result.writes.unauthenticated] == [(revoked.id, REVOKED_KEY), (stranger.id, None)]
    assert result.writes.operations == [] and result.writes.versions == []
    [(_, payload)] = result.writes.notifications  # the stranger's gateway hears nothing
    assert [o["id"] for o in orjson.loads(payload)] == [str(revoked.id)]


def test_recorded_and_taken_operations_are_answered_not_applied() -> None:
    done, taken = write((1, 7, 1)), write((1, 8, 1))
    record = {"id": str(done.id), "status": "succeeded", "values": [], "errors": []}
    result = plan([done, taken], known={done.id: KnownOperation(WS, "succeeded", record, ADMIN_KEY),
                                        taken.id: KnownOperation(WS, "succeeded", {}, STRANGER_KEY)})
    assert result.outcomes[0] == record and result.outcomes[1]["errors"][0]["field"] == "id"
    assert result.writes.versions == [] and result.writes.operations == []
    [(_, payload)] = result.writes.notifications
    assert [o["id"] for o in orjson.loads(payload)] == [str(done.id)]


def test_idempotent_retries_replay_and_different_requests_conflict() -> None:
    first = write((1, 7, 1), idempotency_key="k", request_hash="h1")
    again = write((1, 7, 1), idempotency_key="k", request_hash="h1")
    other = write((1, 7, 2), idempotency_key="k", request_hash="h2")
    reads = reads_of([first, again, other], [ADMIN_KEY] * 3)
    planner = BatchPlanner([first, again, other], [ADMIN_KEY] * 3, loaded(), reads.keys)
    assert planner.idempotency_scopes() == [(WS, "key:7|k")] * 3
    result = planner.plan(NOW, idempotency={})
    assert result.outcomes[1]["replayed_from"] == str(first.id)
    assert result.outcomes[2]["errors"][0]["type"] == "conflict"
    assert len(result.writes.versions) == 1
    assert result.writes.idempotency_keys == [(WS, "key:7|k", "h1", first.id)]


def test_a_field_deletion_deletes_every_value_it_holds_then_its_field() -> None:
    written = write((1, 9, 4))
    deletion = DeleteField(type="delete_field", id=uuid.uuid4(), workspace_id=WS, accepted_at=NOW, custom_field_id=1)
    commands = [written, deletion]
    reads = reads_of(commands, [ADMIN_KEY] * 2)
    planner = BatchPlanner(commands, [ADMIN_KEY] * 2, loaded(ids=[100]), reads.keys)
    assert planner.deleting() == [1]
    assert planner.keys_to_read({1: [("Story", "7")]}) == [(WS, ValueKey(SubjectType.STORY, "7", 1))]
    assert planner.ids_needed() == 2
    result = planner.plan(NOW, idempotency={}, more_ids=[200, 201],
                          more_states=[(WS, "Story", "7", 1, 3, 50, 8, None, None)])
    assert [o["status"] for o in result.outcomes] == ["succeeded", "succeeded"]
    assert [(v["subject_id"], v["change"]) for v in result.outcomes[1]["values"]] == [("7", "deleted"),
                                                                                      ("9", "deleted")]
    assert result.writes.deleted_fields == [1]
    assert sorted((c[2], c[4], c[5]) for c in result.writes.current) == [("7", 4, None), ("9", 2, None)]


PROJECT = uuid.UUID("5d7c9c1e-8a53-4a35-9b8f-0f3f2b4a7e10")
TITLE = FieldDefinition(3, WS, "Title", SubjectType.WORK_ITEM, ValueType.STRING, project=str(PROJECT))
SIZE = FieldDefinition(4, WS, "Size", SubjectType.WORK_ITEM, ValueType.NUMBER, project=str(PROJECT))


def delete_project(project: uuid.UUID = PROJECT) -> DeleteProject:
    return DeleteProject(type="delete_project", id=uuid.uuid4(), workspace_id=WS, accepted_at=NOW, project_id=project)


def test_a_project_deletion_deletes_every_value_of_every_property_then_them_and_the_project() -> None:
    deletion, again = delete_project(), delete_project()
    commands = [deletion, again]
    project_fields = {(WS, PROJECT): [3, 4]}
    reads = reads_of(commands, [ADMIN_KEY] * 2, project_fields)
    assert sorted(reads.field_ids) == [3, 3, 4, 4]
    planner = BatchPlanner(commands, [ADMIN_KEY] * 2, loaded(definitions={3: TITLE, 4: SIZE}), reads.keys,
                           project_fields)
    assert sorted(planner.deleting()) == [3, 3, 4, 4]
    item = "6e8a1a2b-0000-4000-8000-000000000001"
    assert planner.keys_to_read({3: [("WorkItem", item)], 4: []}) == [(WS, ValueKey(SubjectType.WORK_ITEM, item, 3))]
    result = planner.plan(NOW, idempotency={}, more_ids=[200, 201],
                          more_states=[(WS, "WorkItem", item, 3, 2, 50, "hello", None, None)])
    assert [o["status"] for o in result.outcomes] == ["succeeded", "failed"]  # the second finds it gone
    assert result.outcomes[1]["errors"][0]["type"] == "not_found"
    assert [(v["subject_id"], v["change"]) for v in result.outcomes[0]["values"]] == [(item, "deleted")]
    assert result.writes.deleted_fields == [3, 4]
    assert result.writes.deleted_projects == [(WS, PROJECT)]


def _field_row(definition: FieldDefinition) -> dict[str, Any]:
    return {"id": definition.id, "uuid": uuid.UUID(int=definition.id), "project_id": PROJECT,
            "name": definition.name, "description": "", "subject_type": "WorkItem",
            "value_type": definition.value_type.value, "relation_target": None, "relation_multi": False,
            "write_access": "project_admin", "read_access": "project_collaboration", "is_required": False,
            "default_value": None, "unique_constraint": False, "is_active": True, "settings": {},
            "validation_rules": {}, "external_id": None, "external_source": None, "created_at": NOW,
            "updated_at": NOW}


def test_a_project_deletion_announces_its_values_then_its_properties_then_itself() -> None:
    deletion = delete_project()
    project_fields = {(WS, PROJECT): [3, 4]}
    reads = reads_of([deletion], [ADMIN_KEY], project_fields)
    planner = BatchPlanner([deletion], [ADMIN_KEY], loaded(definitions={3: TITLE, 4: SIZE}), reads.keys,
                           project_fields)
    item = "6e8a1a2b-0000-4000-8000-000000000001"
    planner.keys_to_read({3: [("WorkItem", item)], 4: []})
    project = {"id": PROJECT, "workspace_id": WS, "name": "Web", "identifier": "WEB", "description": "",
               "created_at": NOW, "updated_at": NOW}
    result = planner.plan(NOW, idempotency={}, more_ids=[200],
                          more_states=[(WS, "WorkItem", item, 3, 2, 50, "hello", None, None)],
                          deleted=Deleted({3: _field_row(TITLE), 4: _field_row(SIZE)}, {(WS, PROJECT): project}))
    events = [orjson.loads(e[5]) for e in result.writes.events]
    assert [(e[1], e[3]) for e in result.writes.events] == [
        (42, "cfv.value.deleted.v1"), (43, "cfv.property.deleted.v1"), (44, "cfv.property.deleted.v1"),
        (45, "cfv.project.deleted.v1")]
    assert [e[4] for e in result.writes.events[1:]] == [
        "acme.definition.property.3.deleted", "acme.definition.property.4.deleted",
        f"acme.definition.project.{PROJECT}.deleted"]
    assert [e["data"]["before"]["name"] for e in events[1:]] == ["Title", "Size", "Web"]
    assert all(e["data"]["after"] is None and e["data"]["operation_id"] == str(deletion.id) for e in events[1:])
    assert (OUTBOX_CHANNEL, str(WS)) in result.writes.notifications


def test_a_project_deletion_takes_an_account_administrator_and_a_live_project() -> None:
    lead = b"L" * 32
    signers = [SignerRow(ADMIN_KEY, 7, WS, 70, "account_admin", True), SignerRow(lead, 9, WS, 90, "project_lead", True)]
    missing, refused = delete_project(uuid.uuid4()), delete_project()
    commands = [missing, refused]
    project_fields = {(WS, PROJECT): [3]}
    reads = reads_of(commands, [ADMIN_KEY, lead], project_fields)
    planner = BatchPlanner(commands, [ADMIN_KEY, lead], loaded(definitions={3: TITLE}, signers=signers), reads.keys,
                           project_fields)
    assert planner.deleting() == []  # neither reads a value
    result = planner.plan(NOW, idempotency={})
    assert [o["errors"][0]["type"] for o in result.outcomes] == ["not_found", "forbidden"]
    assert result.writes.deleted_fields == [] and result.writes.deleted_projects == []


def test_writes_to_unique_fields_probe_their_values() -> None:
    command = write((2, 7, "A-1"), (1, 7, 3))
    reads = reads_of([command], [ADMIN_KEY])
    planner = BatchPlanner([command], [ADMIN_KEY], loaded(), reads.keys)
    assert planner.unique_probes() == [(WS, 2, '"A-1"')]
    result = planner.plan(NOW, idempotency={}, more_states=[(WS, "Story", "8", 2, 1, 60, "A-1", None, None)])
    assert result.outcomes[0]["errors"][0]["type"] == "conflict"
