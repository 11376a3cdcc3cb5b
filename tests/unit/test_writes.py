"""Validating a write command's items: every error collected, valid writes in canonical form."""

from __future__ import annotations

from typing import Any

import pytest
from cfv.domain.fields import FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.rules import parse_rules
from cfv.domain.values import SetEdit
from cfv.domain.writes import (
    NO_REF,
    ErrorType,
    ExternalRef,
    ItemError,
    Op,
    ValidWrite,
    ValueKey,
    WriteItem,
    validate_items,
)

WORKSPACE = 10
OTHER_WORKSPACE = 99
UUID_LOWER = "12345678-9abc-4def-8123-456789abcdef"
USER_UUID = "00000000-0000-4000-8000-0000000000aa"

BUDGET = FieldDefinition(1, WORKSPACE, "Budget", SubjectType.STORY, ValueType.NUMBER)
COLOUR = FieldDefinition(2, WORKSPACE, "Colour", SubjectType.STORY, ValueType.SINGLE, choice_ids=frozenset({1, 2}))
OLD = FieldDefinition(3, WORKSPACE, "Old", SubjectType.STORY, ValueType.STRING, deleted=True)
THEIRS = FieldDefinition(4, OTHER_WORKSPACE, "Theirs", SubjectType.STORY, ValueType.STRING)
OWNER = FieldDefinition(5, WORKSPACE, "Owner", SubjectType.WORK_ITEM, ValueType.RELATION,
                        relation_target=RelationTarget.USER)
TAG_UUID = "a0000000-0000-4000-8000-000000000002"
TAGS = FieldDefinition(6, WORKSPACE, "Tags", SubjectType.USER, ValueType.MULTI, choice_ids=frozenset({1, 2, 3}),
                       choice_uuids={TAG_UUID: 2})
DUE = FieldDefinition(7, WORKSPACE, "Due", SubjectType.STORY, ValueType.DATE)
TITLE = FieldDefinition(8, WORKSPACE, "Title", SubjectType.STORY, ValueType.STRING, required=True)
RETIRED = FieldDefinition(9, WORKSPACE, "Retired", SubjectType.STORY, ValueType.NUMBER, active=False)
CAPPED = FieldDefinition(10, WORKSPACE, "Capped", SubjectType.STORY, ValueType.NUMBER,
                         rules=parse_rules(ValueType.NUMBER, False, {"min": 0, "max": 100}))
RETIRED_REQUIRED = FieldDefinition(11, WORKSPACE, "Legacy", SubjectType.STORY, ValueType.STRING, required=True,
                                   active=False)

DEFINITIONS: dict[int, FieldDefinition] = {
    d.id: d for d in (BUDGET, COLOUR, OLD, THEIRS, OWNER, TAGS, DUE, TITLE, RETIRED, CAPPED, RETIRED_REQUIRED)
}
PLANE = ExternalRef("issue-42", "plane")
MISSING_ID = 777

KNOWN_SUBJECT_TYPES = "Estimate, Story, User, Workspace, WorkspaceGroup, Resource, WorkItem"


def validate(*items: WriteItem) -> tuple[list[ValidWrite], list[ItemError]]:
    return validate_items(WORKSPACE, list(items), DEFINITIONS)


def test_no_items_is_no_writes_and_no_errors() -> None:
    assert validate() == ([], [])


def test_valid_items_come_back_in_order_with_canonical_values_and_keys() -> None:
    valid, errors = validate(
        WriteItem("Story", "42", BUDGET.id, 13.5),
        WriteItem("WorkItem", UUID_LOWER.upper(), OWNER.id, USER_UUID.upper()),
        WriteItem("User", 9, TAGS.id, [3, 1, 3]),
        WriteItem("Story", 42, COLOUR.id, 2),
        WriteItem("Story", "0042", DUE.id, "2014-02-25"),
    )
    assert errors == []
    assert valid == [
        ValidWrite(0, ValueKey(SubjectType.STORY, "42", BUDGET.id), 13.5, BUDGET),
        ValidWrite(1, ValueKey(SubjectType.WORK_ITEM, UUID_LOWER, OWNER.id), [USER_UUID], OWNER),
        ValidWrite(2, ValueKey(SubjectType.USER, "9", TAGS.id), [3, 1], TAGS),
        ValidWrite(3, ValueKey(SubjectType.STORY, "42", COLOUR.id), [2], COLOUR),
        ValidWrite(4, ValueKey(SubjectType.STORY, "42", DUE.id), "2014-02-25", DUE),
    ]
    assert all(type(w.key.subject_id) is str for w in valid)
    assert valid[0].key.subject_type is SubjectType.STORY


def test_same_subject_as_int_or_text_gives_the_same_key() -> None:
    valid, errors = validate(WriteItem("Story", 42, BUDGET.id, 1), WriteItem("Story", "42", BUDGET.id, 2))
    assert errors == []
    assert valid[0].key == valid[1].key
    assert hash(valid[0].key) == hash(valid[1].key)


def test_every_error_is_collected_with_its_index_field_and_type() -> None:
    valid, errors = validate(
        WriteItem("Story", 1, BUDGET.id, 5),  # 0: valid
        WriteItem("Story", 1, MISSING_ID, 5),  # 1: unknown field
        WriteItem("Project", 1, BUDGET.id, 5),  # 2: unknown subject type
        WriteItem("User", 1, BUDGET.id, 5),  # 3: subject type of another field
        WriteItem("Story", "abc", BUDGET.id, 5),  # 4: bad subject id
        WriteItem("Story", 1, BUDGET.id, "13"),  # 5: bad value
        WriteItem("Story", 2, COLOUR.id, [1]),  # 6: valid
        WriteItem("Story", 1, COLOUR.id, [9]),  # 7: bad value
        WriteItem("Story", 1, OLD.id, "x"),  # 8: deleted field
    )
    assert errors == [
        ItemError(ErrorType.NOT_FOUND, f"custom field {MISSING_ID} not found", "custom_field_id", 1, MISSING_ID),
        ItemError(ErrorType.VALIDATION, f"subject_type must be one of {KNOWN_SUBJECT_TYPES}", "subject_type", 2,
                  BUDGET.id),
        ItemError(ErrorType.VALIDATION, "custom field 1 applies to Story, not User", "subject_type", 3, BUDGET.id),
        ItemError(ErrorType.VALIDATION, "Story ids are positive integers", "subject_id", 4, BUDGET.id),
        ItemError(ErrorType.VALIDATION, "Budget: must be a number", "value", 5, BUDGET.id),
        ItemError(ErrorType.VALIDATION, "Colour: not a choice of this field: 9", "value", 7, COLOUR.id),
        ItemError(ErrorType.NOT_FOUND, f"custom field {OLD.id} not found", "custom_field_id", 8, OLD.id),
    ]
    # The valid items are still reported, with their own indexes (all-or-nothing is the caller's call).
    assert [(w.index, w.key, w.value) for w in valid] == [
        (0, ValueKey(SubjectType.STORY, "1", BUDGET.id), 5),
        (6, ValueKey(SubjectType.STORY, "2", COLOUR.id), [1]),
    ]


def test_several_errors_on_the_same_field_are_each_reported() -> None:
    _, errors = validate(*(WriteItem("Story", 1, BUDGET.id, bad) for bad in ("1", True, None, float("nan"))))
    assert [e.index for e in errors] == [0, 1, 2, 3]
    assert all(e.field == "value" and e.custom_field_id == BUDGET.id for e in errors)
    assert [e.message for e in errors] == [
        "Budget: must be a number",
        "Budget: must be a number",
        "Budget: a value is required; delete the value to clear it",
        "Budget: must be a finite number",
    ]


@pytest.mark.parametrize("field_id", [MISSING_ID, OLD.id, THEIRS.id], ids=["unknown", "deleted", "other-workspace"])
def test_unknown_deleted_and_foreign_fields_are_all_not_found(field_id: int) -> None:
    valid, errors = validate(WriteItem("Story", 1, field_id, "x"))
    assert valid == []
    assert errors == [
        ItemError(ErrorType.NOT_FOUND, f"custom field {field_id} not found", "custom_field_id", 0, field_id),
    ]


@pytest.mark.parametrize("subject_type", ["Story", "User", "Project"])
@pytest.mark.parametrize("subject_id", [1, "abc"])
@pytest.mark.parametrize("value", ["x", 5, None])
def test_not_found_fields_cannot_be_probed(subject_type: str, subject_id: Any, value: Any) -> None:
    # Whatever else is wrong with the item, a missing, deleted or foreign field answers the same way,
    # so nothing about another workspace's field (its subject type, its value type) leaks out.
    ids = (MISSING_ID, OLD.id, THEIRS.id)
    _, errors = validate(*(WriteItem(subject_type, subject_id, i, value) for i in ids))
    assert [(e.type, e.field, e.index, e.custom_field_id) for e in errors] == [
        (ErrorType.NOT_FOUND, "custom_field_id", index, i) for index, i in enumerate(ids)
    ]
    shapes = {e.message.replace(str(e.custom_field_id), "<id>") for e in errors}
    assert shapes == {"custom field <id> not found"}


def test_a_field_is_found_in_its_own_workspace() -> None:
    valid, errors = validate_items(OTHER_WORKSPACE, [WriteItem("Story", 1, THEIRS.id, "x")], DEFINITIONS)
    assert errors == []
    assert valid == [ValidWrite(0, ValueKey(SubjectType.STORY, "1", THEIRS.id), "x", THEIRS)]


def test_fields_of_this_workspace_are_not_found_from_another() -> None:
    valid, errors = validate_items(OTHER_WORKSPACE, [WriteItem("Story", 1, BUDGET.id, 5)], DEFINITIONS)
    assert valid == []
    assert errors == [ItemError(ErrorType.NOT_FOUND, "custom field 1 not found", "custom_field_id", 0, 1)]


@pytest.mark.parametrize("subject_type", ["Project", "story", "STORY", "", "Work Item", "work_item"])
def test_unknown_subject_type_is_refused(subject_type: str) -> None:
    valid, errors = validate(WriteItem(subject_type, 1, BUDGET.id, 5))
    assert valid == []
    assert errors == [
        ItemError(ErrorType.VALIDATION, f"subject_type must be one of {KNOWN_SUBJECT_TYPES}", "subject_type", 0,
                  BUDGET.id),
    ]


@pytest.mark.parametrize(("subject_type", "subject_id"), [
    ("User", 1), ("Estimate", 1), ("Workspace", 1), ("WorkspaceGroup", 1), ("Resource", 1), ("WorkItem", UUID_LOWER),
])
def test_subject_type_must_match_the_field(subject_type: str, subject_id: Any) -> None:
    valid, errors = validate(WriteItem(subject_type, subject_id, BUDGET.id, 5))
    assert valid == []
    assert errors == [
        ItemError(ErrorType.VALIDATION, f"custom field 1 applies to Story, not {subject_type}", "subject_type", 0,
                  BUDGET.id),
    ]


@pytest.mark.parametrize(("field", "subject_type", "subject_id", "message"), [
    (BUDGET, "Story", "abc", "Story ids are positive integers"),
    (BUDGET, "Story", 0, "Story ids are positive integers"),
    (BUDGET, "Story", -3, "Story ids are positive integers"),
    (BUDGET, "Story", True, "Story ids are positive integers"),
    (BUDGET, "Story", 2**63, "Story ids are positive integers"),
    (BUDGET, "Story", UUID_LOWER, "Story ids are positive integers"),
    (TAGS, "User", "1.5", "User ids are positive integers"),
    (OWNER, "WorkItem", 42, "WorkItem ids are UUIDs"),
    (OWNER, "WorkItem", "not-a-uuid", "WorkItem ids are UUIDs"),
], ids=repr)
def test_bad_subject_id_is_refused(field: FieldDefinition, subject_type: str, subject_id: Any, message: str) -> None:
    value = {BUDGET.id: 5, TAGS.id: [1], OWNER.id: USER_UUID}[field.id]
    valid, errors = validate(WriteItem(subject_type, subject_id, field.id, value))
    assert valid == []
    assert errors == [ItemError(ErrorType.VALIDATION, message, "subject_id", 0, field.id)]


def test_subject_id_is_checked_before_the_value() -> None:
    _, errors = validate(WriteItem("Story", "abc", BUDGET.id, "not a number"))
    assert [(e.field, e.message) for e in errors] == [("subject_id", "Story ids are positive integers")]


def test_overlong_digit_subject_id_is_an_item_error_not_an_exception() -> None:
    # One bad item must not stop the others being checked, nor escape as an exception.
    valid, errors = validate(WriteItem("Story", "9" * 5000, BUDGET.id, 5), WriteItem("Story", 1, BUDGET.id, 5))
    assert errors == [ItemError(ErrorType.VALIDATION, "Story ids are positive integers", "subject_id", 0, BUDGET.id)]
    assert [w.index for w in valid] == [1]


@pytest.mark.parametrize(("field", "subject_type", "subject_id", "value", "message"), [
    (BUDGET, "Story", 1, "13", "Budget: must be a number"),
    (BUDGET, "Story", 1, None, "Budget: a value is required; delete the value to clear it"),
    (COLOUR, "Story", 1, [1, 2], "Colour: a single choice field takes exactly one choice"),
    (COLOUR, "Story", 1, [9], "Colour: not a choice of this field: 9"),
    (TAGS, "User", 1, [], "Tags: must list at least one choice; delete the value to clear it"),
    (OWNER, "WorkItem", UUID_LOWER, 7, "Owner: users are given by their UUIDs"),
    (OWNER, "WorkItem", UUID_LOWER, "7", "Owner: users are given by their UUIDs"),
    (TITLE, "Story", 1, "   ", "Title: is required: a blank value is refused"),
    (CAPPED, "Story", 1, 101, "Capped: must be at most 100"),
    (CAPPED, "Story", 1, -1, "Capped: must be at least 0"),
    (DUE, "Story", 1, "2014-02-30", "Due: must be a real calendar date"),
])
def test_bad_value_message_is_prefixed_with_the_field_name(
    field: FieldDefinition, subject_type: str, subject_id: Any, value: Any, message: str
) -> None:
    valid, errors = validate(WriteItem(subject_type, subject_id, field.id, value))
    assert valid == []
    assert errors == [ItemError(ErrorType.VALIDATION, message, "value", 0, field.id)]


def test_definitions_of_other_ids_do_not_matter() -> None:
    valid, errors = validate_items(WORKSPACE, [WriteItem("Story", 1, BUDGET.id, 5)], {BUDGET.id: BUDGET})
    assert errors == []
    assert valid == [ValidWrite(0, ValueKey(SubjectType.STORY, "1", BUDGET.id), 5, BUDGET)]
    _, errors = validate_items(WORKSPACE, [WriteItem("Story", 1, BUDGET.id, 5)], {})
    assert errors == [ItemError(ErrorType.NOT_FOUND, "custom field 1 not found", "custom_field_id", 0, 1)]



# op, must_exist, external; deletes; required and inactive fields


def test_an_item_is_a_plain_write_by_default() -> None:
    item = WriteItem("Story", 1, BUDGET.id, 5)
    assert (item.op, item.must_exist, item.external) == (Op.WRITE, False, NO_REF)
    valid, errors = validate(item)
    assert errors == []
    assert (valid[0].op, valid[0].must_exist, valid[0].external) == (Op.WRITE, False, NO_REF)


@pytest.mark.parametrize("must_exist", [False, True])
@pytest.mark.parametrize("external", [NO_REF, PLANE, ExternalRef(id="x-1")], ids=repr)
def test_a_write_carries_its_op_must_exist_and_external_ref(must_exist: bool, external: ExternalRef) -> None:
    valid, errors = validate(WriteItem("Story", "7", CAPPED.id, 100, Op.WRITE, must_exist, external))
    assert errors == []
    assert valid == [
        ValidWrite(0, ValueKey(SubjectType.STORY, "7", CAPPED.id), 100, CAPPED, Op.WRITE, must_exist, external),
    ]


@pytest.mark.parametrize("value", [None, 5, "not a number", [1, 2], {"x": 1}], ids=repr)
def test_a_delete_skips_value_validation_and_has_no_value(value: Any) -> None:
    valid, errors = validate(WriteItem("Story", "0042", BUDGET.id, value, Op.DELETE, external=PLANE))
    assert errors == []
    assert len(valid) == 1
    assert valid[0].op is Op.DELETE
    assert valid[0].value is None
    assert valid[0].key == ValueKey(SubjectType.STORY, "42", BUDGET.id)
    assert valid[0].definition is BUDGET
    assert valid[0].external == PLANE


def test_a_delete_ignores_the_rules_a_write_would_break() -> None:
    valid, errors = validate(WriteItem("Story", 1, CAPPED.id, 1000, Op.DELETE))
    assert errors == []
    assert [(w.op, w.value) for w in valid] == [(Op.DELETE, None)]


@pytest.mark.parametrize("field", [TITLE, RETIRED_REQUIRED], ids=lambda f: f.name)
@pytest.mark.parametrize("value", [None, "kept"])
def test_the_value_of_a_required_field_cannot_be_deleted(field: FieldDefinition, value: Any) -> None:
    valid, errors = validate(WriteItem("Story", 1, field.id, value, Op.DELETE))
    assert valid == []
    assert errors == [
        ItemError(ErrorType.VALIDATION, f"{field.name}: is required, its value cannot be deleted", "value", 0,
                  field.id),
    ]


def test_a_required_field_takes_writes() -> None:
    valid, errors = validate(WriteItem("Story", 1, TITLE.id, "A title"))
    assert errors == []
    assert [(w.op, w.value) for w in valid] == [(Op.WRITE, "A title")]


@pytest.mark.parametrize("value", [5, "not a number", None], ids=repr)
@pytest.mark.parametrize("must_exist", [False, True])
def test_an_inactive_field_takes_no_writes(value: Any, must_exist: bool) -> None:
    valid, errors = validate(WriteItem("Story", 1, RETIRED.id, value, must_exist=must_exist))
    assert valid == []
    assert errors == [
        ItemError(ErrorType.VALIDATION, "Retired: is not active and takes no values", "value", 0, RETIRED.id),
    ]


def test_the_value_of_an_inactive_field_can_be_deleted() -> None:
    valid, errors = validate(WriteItem("Story", 3, RETIRED.id, None, Op.DELETE))
    assert errors == []
    assert [(w.op, w.key, w.value) for w in valid] == [(Op.DELETE, ValueKey(SubjectType.STORY, "3", RETIRED.id), None)]


@pytest.mark.parametrize(("item", "error"), [
    (WriteItem("Story", 1, MISSING_ID, None, Op.DELETE),
     ItemError(ErrorType.NOT_FOUND, f"custom field {MISSING_ID} not found", "custom_field_id", 0, MISSING_ID)),
    (WriteItem("Story", 1, OLD.id, None, Op.DELETE),
     ItemError(ErrorType.NOT_FOUND, f"custom field {OLD.id} not found", "custom_field_id", 0, OLD.id)),
    (WriteItem("Story", 1, THEIRS.id, None, Op.DELETE),
     ItemError(ErrorType.NOT_FOUND, f"custom field {THEIRS.id} not found", "custom_field_id", 0, THEIRS.id)),
    (WriteItem("User", 1, BUDGET.id, None, Op.DELETE),
     ItemError(ErrorType.VALIDATION, "custom field 1 applies to Story, not User", "subject_type", 0, BUDGET.id)),
    (WriteItem("Story", "abc", BUDGET.id, None, Op.DELETE),
     ItemError(ErrorType.VALIDATION, "Story ids are positive integers", "subject_id", 0, BUDGET.id)),
    (WriteItem("WorkItem", 42, OWNER.id, None, Op.DELETE),
     ItemError(ErrorType.VALIDATION, "WorkItem ids are UUIDs", "subject_id", 0, OWNER.id)),
], ids=["unknown-field", "deleted-field", "foreign-field", "wrong-subject-type", "bad-subject-id",
        "bad-work-item-id"])
def test_a_delete_still_checks_its_field_and_subject(item: WriteItem, error: ItemError) -> None:
    valid, errors = validate(item)
    assert valid == []
    assert errors == [error]


def test_writes_and_deletes_are_validated_together() -> None:
    valid, errors = validate(
        WriteItem("Story", 1, BUDGET.id, 5, must_exist=True),  # 0: valid write
        WriteItem("Story", 1, TITLE.id, None, Op.DELETE),  # 1: required
        WriteItem("Story", 1, RETIRED.id, None, Op.DELETE),  # 2: valid delete
        WriteItem("Story", 1, RETIRED.id, 3),  # 3: inactive
        WriteItem("Story", 1, CAPPED.id, 500, external=PLANE),  # 4: breaks a rule
        WriteItem("Story", 2, DUE.id, None, Op.DELETE, external=PLANE),  # 5: valid delete
    )
    assert errors == [
        ItemError(ErrorType.VALIDATION, "Title: is required, its value cannot be deleted", "value", 1, TITLE.id),
        ItemError(ErrorType.VALIDATION, "Retired: is not active and takes no values", "value", 3, RETIRED.id),
        ItemError(ErrorType.VALIDATION, "Capped: must be at most 100", "value", 4, CAPPED.id),
    ]
    assert [(w.index, w.op, w.value, w.must_exist, w.external) for w in valid] == [
        (0, Op.WRITE, 5, True, NO_REF),
        (2, Op.DELETE, None, False, NO_REF),
        (5, Op.DELETE, None, False, PLANE),
    ]


# expected_version and origin; edits of a multi choice set; precondition_failed


@pytest.mark.parametrize(("error_type", "wire"), [
    (ErrorType.VALIDATION, "validation"),
    (ErrorType.NOT_FOUND, "not_found"),
    (ErrorType.CONFLICT, "conflict"),
    (ErrorType.PRECONDITION, "precondition_failed"),
    (ErrorType.INTERNAL, "internal"),
])
def test_error_types_have_their_wire_names(error_type: ErrorType, wire: str) -> None:
    assert error_type == wire
    assert ErrorType(wire) is error_type


def test_an_item_expects_no_version_and_has_no_origin_by_default() -> None:
    item = WriteItem("Story", 1, BUDGET.id, 5)
    assert (item.expected_version, item.origin) == (None, None)
    valid, errors = validate(item, WriteItem("Story", 1, BUDGET.id, None, Op.DELETE))
    assert errors == []
    assert [(w.expected_version, w.origin) for w in valid] == [(None, None), (None, None)]


@pytest.mark.parametrize("expected_version", [None, 0, 1, 42])
@pytest.mark.parametrize("origin", [None, "kantata", "plane-sync"])
def test_a_write_carries_its_expected_version_and_origin(expected_version: int | None, origin: str | None) -> None:
    valid, errors = validate(WriteItem("Story", "7", CAPPED.id, 100, Op.WRITE, True, PLANE, expected_version, origin))
    assert errors == []
    assert valid == [
        ValidWrite(0, ValueKey(SubjectType.STORY, "7", CAPPED.id), 100, CAPPED, Op.WRITE, True, PLANE,
                   expected_version, origin),
    ]


@pytest.mark.parametrize("expected_version", [None, 0, 3])
@pytest.mark.parametrize("origin", [None, "kantata"])
def test_a_delete_carries_its_expected_version_and_origin(expected_version: int | None, origin: str | None) -> None:
    valid, errors = validate(WriteItem("Story", "0042", BUDGET.id, None, Op.DELETE, external=PLANE,
                                       expected_version=expected_version, origin=origin))
    assert errors == []
    assert valid == [
        ValidWrite(0, ValueKey(SubjectType.STORY, "42", BUDGET.id), None, BUDGET, Op.DELETE, False, PLANE,
                   expected_version, origin),
    ]


def test_expected_version_and_origin_stay_with_their_own_items() -> None:
    valid, errors = validate(
        WriteItem("Story", 1, BUDGET.id, 1, expected_version=4, origin="a"),
        WriteItem("Story", 1, BUDGET.id, "bad", expected_version=5, origin="b"),  # refused
        WriteItem("Story", 2, BUDGET.id, None, Op.DELETE, expected_version=6, origin="c"),
        WriteItem("Story", 3, BUDGET.id, 3),
    )
    assert errors == [ItemError(ErrorType.VALIDATION, "Budget: must be a number", "value", 1, BUDGET.id)]
    assert [(w.index, w.expected_version, w.origin) for w in valid] == [(0, 4, "a"), (2, 6, "c"), (3, None, None)]


@pytest.mark.parametrize(("value", "expected"), [
    ({"add": [3, 1, 3]}, SetEdit((3, 1), ())),
    ({"remove": [TAG_UUID.upper()]}, SetEdit((), (2,))),
    ({"add": [TAG_UUID], "remove": [1]}, SetEdit((2,), (1,))),
], ids=repr)
def test_a_dict_on_a_multi_field_is_a_valid_edit_of_the_set(value: Any, expected: SetEdit) -> None:
    valid, errors = validate(WriteItem("User", "9", TAGS.id, value, Op.WRITE, True, PLANE, 2, "plane"))
    assert errors == []
    assert valid == [ValidWrite(0, ValueKey(SubjectType.USER, "9", TAGS.id), expected, TAGS, Op.WRITE, True, PLANE,
                                2, "plane")]
    assert type(valid[0].value) is SetEdit


@pytest.mark.parametrize(("field", "subject_type", "value", "message"), [
    (TAGS, "User", {}, 'Tags: an edit of the set is {"add": [choices], "remove": [choices]}'),
    (TAGS, "User", {"add": [1], "keep": [2]}, 'Tags: an edit of the set is {"add": [choices], "remove": [choices]}'),
    (TAGS, "User", {"add": 1}, "Tags: add and remove are lists of at most 100 choices"),
    (TAGS, "User", {"add": [9]}, "Tags: not a choice of this field: 9"),
    (TAGS, "User", {"add": [1], "remove": [1]}, "Tags: cannot both add and remove 1"),
    (COLOUR, "Story", {"add": [1]}, "Colour: choices are given by their integer ids or UUIDs"),
    (BUDGET, "Story", {"add": [1]}, "Budget: must be a number"),
    (OWNER, "WorkItem", {"add": [USER_UUID]}, "Owner: users are given by their UUIDs"),
], ids=repr)
def test_a_bad_edit_or_an_edit_of_another_type_is_a_validation_error(
    field: FieldDefinition, subject_type: str, value: Any, message: str
) -> None:
    subject_id = UUID_LOWER if subject_type == "WorkItem" else 1
    valid, errors = validate(WriteItem(subject_type, subject_id, field.id, value, expected_version=1))
    assert valid == []
    assert errors == [ItemError(ErrorType.VALIDATION, message, "value", 0, field.id)]
