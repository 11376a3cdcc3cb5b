"""A user relation names users of the workspace (issue 13, bug 2): unknown users are refused, deactivated ones may
stay in a value that names them but not be added; work-item relations and other fields are not looked at."""

from __future__ import annotations

from cfv.domain.changes import KeyState, StoredValue
from cfv.domain.fields import FieldDefinition, RelationTarget, SubjectType, ValueType
from cfv.domain.users import KnownUsers, names_users, user_errors, users_named
from cfv.domain.values import JSON
from cfv.domain.writes import ErrorType, Op, ValidWrite, ValueKey

WS = 7
U1, U2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
ASSIGNEES = FieldDefinition(1, WS, "Assignees", SubjectType.STORY, ValueType.RELATION,
                            relation_target=RelationTarget.USER, relation_multi=True)
OWNER = FieldDefinition(2, WS, "Owner", SubjectType.WORK_ITEM, ValueType.RELATION,
                        relation_target=RelationTarget.USER)
BLOCKS = FieldDefinition(3, WS, "Blocks", SubjectType.WORK_ITEM, ValueType.RELATION,
                         relation_target=RelationTarget.WORK_ITEM, relation_multi=True)
POINTS = FieldDefinition(4, WS, "Points", SubjectType.STORY, ValueType.NUMBER)
USERS: KnownUsers = {(WS, 10): True, (WS, 11): False, (WS, U1): True, (WS, U2): False}


def _write(definition: FieldDefinition, value: JSON, index: int = 0, op: Op = Op.WRITE) -> ValidWrite:
    return ValidWrite(index, ValueKey(definition.subject_type, "s1", definition.id), value, definition, op)


def _holding(definition: FieldDefinition, value: JSON) -> dict[ValueKey, KeyState]:
    return {ValueKey(definition.subject_type, "s1", definition.id): KeyState(StoredValue(1, value), 1)}


def test_only_relations_to_users_name_users() -> None:
    assert names_users(ASSIGNEES) and names_users(OWNER)
    assert not names_users(BLOCKS) and not names_users(POINTS)


def test_the_users_named_are_those_of_user_relation_writes() -> None:
    writes = [_write(ASSIGNEES, [10, 12]), _write(OWNER, [U1]), _write(BLOCKS, [U2]), _write(POINTS, 3),
              _write(ASSIGNEES, None, op=Op.DELETE)]
    assert users_named(WS, writes) == [(WS, 10), (WS, 12), (WS, U1)]


def test_known_active_users_pass() -> None:
    assert user_errors(WS, [_write(ASSIGNEES, [10]), _write(OWNER, [U1])], USERS, {}) == []


def test_unknown_users_are_refused_naming_them() -> None:
    errors = user_errors(WS, [_write(ASSIGNEES, [10, 999999, 5], index=0), _write(OWNER, [U2.replace("2", "9")], 1)],
                         USERS, {})
    assert [(e.type, e.field, e.index, e.custom_field_id) for e in errors] == [
        (ErrorType.VALIDATION, "value", 0, 1), (ErrorType.VALIDATION, "value", 1, 2)]
    assert errors[0].message == "Assignees: no such user in this workspace: 999999, 5"
    assert U2.replace("2", "9") in errors[1].message


def test_another_workspace_s_user_is_unknown() -> None:
    assert user_errors(WS + 1, [_write(ASSIGNEES, [10])], USERS, {})


def test_a_deactivated_user_cannot_be_added() -> None:
    [error] = user_errors(WS, [_write(ASSIGNEES, [10, 11])], USERS, _holding(ASSIGNEES, [10]))
    assert error.message.startswith("Assignees: deactivated user(s) 11 cannot be added")
    assert user_errors(WS, [_write(OWNER, [U2])], USERS, {})


def test_a_deactivated_user_already_named_may_stay() -> None:
    assert user_errors(WS, [_write(ASSIGNEES, [11, 10])], USERS, _holding(ASSIGNEES, [11])) == []
    assert user_errors(WS, [_write(OWNER, [U2])], USERS, _holding(OWNER, [U2])) == []


def test_work_item_relations_and_deletes_are_free() -> None:
    assert user_errors(WS, [_write(BLOCKS, [U2, "00000000-0000-4000-8000-00000000ffff"]),
                            _write(ASSIGNEES, None, op=Op.DELETE)], USERS, {}) == []
