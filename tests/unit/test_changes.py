"""Replace semantics and the fold of writes into per-key changes with gapless sequences."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from cfv.domain.changes import EMPTY, Change, ChangeKind, KeyState, StoredValue, delete, fold_command, replace
from cfv.domain.fields import FieldDefinition, SubjectType, ValueType
from cfv.domain.rules import ValueRules
from cfv.domain.values import SetEdit
from cfv.domain.writes import NO_REF, ErrorType, ExternalRef, ItemError, Op, ValidWrite, ValueKey

TAGS = FieldDefinition(6, 10, "Tags", SubjectType.STORY, ValueType.MULTI, choice_ids=frozenset({1, 2, 3, 4}))
KEY_A = ValueKey(SubjectType.STORY, "1", TAGS.id)
KEY_B = ValueKey(SubjectType.STORY, "2", TAGS.id)
KEY_C = ValueKey(SubjectType.STORY, "3", TAGS.id)
KEY_D = ValueKey(SubjectType.STORY, "4", TAGS.id)
PLANE = ExternalRef("ext-1", "plane")


# Tags with at most two choices: a set edit's result is checked against the field's rules.
PAIR = FieldDefinition(12, 10, "Pair", SubjectType.STORY, ValueType.MULTI, choice_ids=frozenset({1, 2, 3, 4}),
                       rules=ValueRules(max_count=2))
KEY_PAIR = ValueKey(SubjectType.STORY, "1", PAIR.id)


def write(key: ValueKey, value: Any, index: int = 0, *, must_exist: bool = False,
          external: ExternalRef = NO_REF, expected_version: int | None = None) -> ValidWrite:
    return ValidWrite(index, key, value, TAGS, Op.WRITE, must_exist, external, expected_version)


def remove(key: ValueKey, index: int = 0, *, expected_version: int | None = None) -> ValidWrite:
    return ValidWrite(index, key, None, TAGS, Op.DELETE, expected_version=expected_version)


def edit(key: ValueKey, add: tuple[int, ...] = (), drop: tuple[int, ...] = (), index: int = 0, *,
         must_exist: bool = False, external: ExternalRef = NO_REF, expected_version: int | None = None,
         definition: FieldDefinition = TAGS) -> ValidWrite:
    """A write that adds ``add`` to and removes ``drop`` from the key's set."""
    return ValidWrite(index, key, SetEdit(add, drop), definition, Op.WRITE, must_exist, external, expected_version)


def not_found(action: str, index: int) -> ItemError:
    return ItemError(ErrorType.NOT_FOUND, f"Tags: there is no value to {action}", "value", index, TAGS.id)


def precondition_failed(index: int, at: int, expected: int) -> ItemError:
    return ItemError(ErrorType.PRECONDITION, f"Tags: the value is at version {at}, not {expected}; read it again",
                     "expected_version", index, TAGS.id)


def edit_refused(index: int, message: str, definition: FieldDefinition = TAGS) -> ItemError:
    return ItemError(ErrorType.VALIDATION, f"{definition.name}: {message}", "value", index, definition.id)


LEAVES_NOTHING = "the edit would leave no choice; delete the value to clear it"


def test_empty_is_no_value_at_sequence_zero() -> None:
    assert EMPTY.current is None
    assert EMPTY.seq == 0


def test_first_write_is_created_with_seq_1() -> None:
    new = StoredValue(100, [1, 2])
    change = replace(KEY_A, EMPTY, new)
    assert change == Change(key=KEY_A, kind=ChangeKind.CREATED, seq=1, before=None, after=new, version_id=100)
    assert change.kind is ChangeKind.CREATED


def test_second_write_replaces_with_seq_2_and_the_previous_value_before() -> None:
    first = StoredValue(100, [1, 2])
    second = StoredValue(101, [3])
    change = replace(KEY_A, KeyState(current=first, seq=1), second)
    assert change == Change(key=KEY_A, kind=ChangeKind.REPLACED, seq=2, before=first, after=second,
                           version_id=101)
    assert change.kind is ChangeKind.REPLACED


def test_write_after_a_tombstone_is_created_with_the_next_seq() -> None:
    new = StoredValue(200, [4])
    change = replace(KEY_A, KeyState(current=None, seq=5), new)
    assert change == Change(key=KEY_A, kind=ChangeKind.CREATED, seq=6, before=None, after=new, version_id=200)


def test_fold_from_a_tombstone_is_created_with_the_next_seq() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(current=None, seq=5)}
    changes, errors = fold_command(states, [write(KEY_A, [4])], iter([200]))
    assert errors == []
    assert changes == [Change(KEY_A, ChangeKind.CREATED, 6, None, StoredValue(200, [4]), 200)]
    assert states == {KEY_A: KeyState(StoredValue(200, [4]), 6)}


def test_a_multi_choice_write_replaces_the_whole_set() -> None:
    before = StoredValue(100, [1, 2, 3])
    change = replace(KEY_A, KeyState(before, 3), StoredValue(101, [4]))
    assert change.after == StoredValue(101, [4])
    assert change.before == before

    states: dict[ValueKey, KeyState] = {}
    fold_command(states, [write(KEY_A, [1, 2]), write(KEY_A, [3])], iter([1, 2]))
    current = states[KEY_A].current
    assert current is not None
    assert current.value == [3]  # never [1, 2, 3]


def test_fold_interleaved_keys_keeps_per_key_gapless_sequences() -> None:
    b0 = StoredValue(50, [2])
    states: dict[ValueKey, KeyState] = {KEY_B: KeyState(b0, 7)}
    original = states
    writes = [
        write(KEY_A, [1], 0),
        write(KEY_B, [1], 1),
        write(KEY_A, [2], 2),
        write(KEY_C, [3], 3),
        write(KEY_B, [1, 3], 4),
        write(KEY_A, [4, 1], 5),
    ]
    ids = iter(range(101, 200))
    changes, errors = fold_command(states, writes, ids)
    assert errors == []

    a1, a2, a3 = StoredValue(101, [1]), StoredValue(103, [2]), StoredValue(106, [4, 1])
    b1, b2 = StoredValue(102, [1]), StoredValue(105, [1, 3])
    c1 = StoredValue(104, [3])
    assert changes == [
        Change(KEY_A, ChangeKind.CREATED, 1, None, a1, 101),
        Change(KEY_B, ChangeKind.REPLACED, 8, b0, b1, 102),
        Change(KEY_A, ChangeKind.REPLACED, 2, a1, a2, 103),
        Change(KEY_C, ChangeKind.CREATED, 1, None, c1, 104),
        Change(KEY_B, ChangeKind.REPLACED, 9, b1, b2, 105),
        Change(KEY_A, ChangeKind.REPLACED, 3, a2, a3, 106),
    ]
    # new ids are taken in order, one per write, and no more
    assert [c.after.id for c in changes if c.after is not None] == [101, 102, 103, 104, 105, 106]
    assert [c.version_id for c in changes] == [101, 102, 103, 104, 105, 106]
    assert next(ids) == 107
    # per key, the sequence is gapless and each change's before is the previous change's after
    for key in (KEY_A, KEY_B, KEY_C):
        mine = [c for c in changes if c.key == key]
        assert [c.seq for c in mine] == list(range(mine[0].seq, mine[0].seq + len(mine)))
        for previous, following in itertools.pairwise(mine):
            assert following.before == previous.after
    # the mapping is updated in place
    assert states is original
    assert states == {KEY_A: KeyState(a3, 3), KEY_B: KeyState(b2, 9), KEY_C: KeyState(c1, 1)}


def test_two_writes_to_one_key_in_one_fold_chain() -> None:
    states: dict[ValueKey, KeyState] = {}
    changes, _ = fold_command(states, [write(KEY_A, [1]), write(KEY_A, [2])], iter([10, 11]))
    first, second = changes
    assert first == Change(KEY_A, ChangeKind.CREATED, 1, None, StoredValue(10, [1]), 10)
    assert second == Change(KEY_A, ChangeKind.REPLACED, 2, StoredValue(10, [1]), StoredValue(11, [2]), 11)
    assert second.before == first.after
    assert states == {KEY_A: KeyState(StoredValue(11, [2]), 2)}


def test_fold_continues_from_the_stored_state_across_calls() -> None:
    states: dict[ValueKey, KeyState] = {}
    ids = itertools.count(1)
    first, _ = fold_command(states, [write(KEY_A, [1])], ids)
    second, _ = fold_command(states, [write(KEY_A, [2])], ids)
    assert [c.seq for c in first + second] == [1, 2]
    assert second[0].before == first[0].after
    assert second[0].after == StoredValue(2, [2])


def test_fold_of_nothing_changes_nothing() -> None:
    state = KeyState(StoredValue(1, [1]), 4)
    states: dict[ValueKey, KeyState] = {KEY_A: state}
    ids = iter([10])
    assert fold_command(states, [], ids) == ([], [])
    assert states == {KEY_A: state}
    assert next(ids) == 10


def test_fold_leaves_keys_not_written_alone() -> None:
    untouched = KeyState(StoredValue(1, [1]), 4)
    states: dict[ValueKey, KeyState] = {KEY_B: untouched}
    fold_command(states, [write(KEY_A, [2])], iter([10]))
    assert states[KEY_B] is untouched
    assert states[KEY_A] == KeyState(StoredValue(10, [2]), 1)


def test_keys_differ_by_subject_type_and_field() -> None:
    same_id_other_type = ValueKey(SubjectType.USER, "1", TAGS.id)
    same_subject_other_field = ValueKey(SubjectType.STORY, "1", TAGS.id + 1)
    states: dict[ValueKey, KeyState] = {}
    changes, _ = fold_command(
        states,
        [write(KEY_A, [1]), write(same_id_other_type, [1]), write(same_subject_other_field, [1])],
        iter([1, 2, 3]),
    )
    assert [(c.kind, c.seq) for c in changes] == [(ChangeKind.CREATED, 1)] * 3
    assert len(states) == 3


# deletes, update-only writes (must_exist), all or nothing


def test_delete_removes_the_value_with_a_fresh_version_id_and_the_next_seq() -> None:
    before = StoredValue(100, [1, 2])
    change = delete(KEY_A, KeyState(before, 3), 555)
    assert change == Change(KEY_A, ChangeKind.DELETED, 4, before, None, 555)
    assert change.kind is ChangeKind.DELETED


def test_fold_of_a_delete_leaves_a_tombstone() -> None:
    before = StoredValue(100, [1, 2])
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(before, 3)}
    ids = iter([50, 51])
    changes, errors = fold_command(states, [remove(KEY_A)], ids)
    assert errors == []
    assert changes == [Change(KEY_A, ChangeKind.DELETED, 4, before, None, 50)]
    assert states == {KEY_A: KeyState(None, 4)}
    assert next(ids) == 51  # one id per change, no more


def test_a_deleted_value_keeps_its_external_ref_in_before() -> None:
    before = StoredValue(100, [1], PLANE)
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(before, 1)}
    changes, errors = fold_command(states, [remove(KEY_A)], iter([7]))
    assert errors == []
    assert changes[0].before == before
    assert changes[0].before is not None and changes[0].before.external == PLANE


def test_a_write_keeps_its_external_ref_in_the_new_value() -> None:
    states: dict[ValueKey, KeyState] = {}
    changes, errors = fold_command(states, [write(KEY_A, [1], external=PLANE)], iter([9]))
    assert errors == []
    assert changes == [Change(KEY_A, ChangeKind.CREATED, 1, None, StoredValue(9, [1], PLANE), 9)]
    assert states[KEY_A] == KeyState(StoredValue(9, [1], PLANE), 1)


@pytest.mark.parametrize("state", [None, KeyState(None, 5)], ids=["never-written", "tombstone"])
@pytest.mark.parametrize(("item", "action"), [
    (remove(KEY_A, 3), "delete"),
    (write(KEY_A, [1], 3, must_exist=True), "update"),
], ids=["delete", "must-exist-write"])
def test_delete_or_update_of_no_value_is_not_found_and_changes_nothing(
    state: KeyState | None, item: ValidWrite, action: str
) -> None:
    states: dict[ValueKey, KeyState] = {} if state is None else {KEY_A: state}
    snapshot = dict(states)
    ids = iter([10])
    changes, errors = fold_command(states, [item], ids)
    assert changes == []
    assert errors == [not_found(action, 3)]
    assert states == snapshot
    assert next(ids) == 10


def test_must_exist_write_replaces_a_current_value() -> None:
    before = StoredValue(100, [1])
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(before, 2)}
    changes, errors = fold_command(states, [write(KEY_A, [2], must_exist=True)], iter([101]))
    assert errors == []
    assert changes == [Change(KEY_A, ChangeKind.REPLACED, 3, before, StoredValue(101, [2]), 101)]
    assert states == {KEY_A: KeyState(StoredValue(101, [2]), 3)}


def test_must_exist_write_sees_a_write_earlier_in_the_same_command() -> None:
    states: dict[ValueKey, KeyState] = {}
    changes, errors = fold_command(states, [write(KEY_A, [1], 0), write(KEY_A, [2], 1, must_exist=True)],
                                   iter([1, 2]))
    assert errors == []
    assert [(c.kind, c.seq, c.version_id) for c in changes] == [(ChangeKind.CREATED, 1, 1), (ChangeKind.REPLACED, 2, 2)]
    assert states == {KEY_A: KeyState(StoredValue(2, [2]), 2)}


def test_write_after_a_delete_in_the_same_command_creates_again() -> None:
    before = StoredValue(100, [1])
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(before, 3)}
    changes, errors = fold_command(states, [remove(KEY_A, 0), write(KEY_A, [2], 1)], iter([10, 11]))
    assert errors == []
    assert changes == [
        Change(KEY_A, ChangeKind.DELETED, 4, before, None, 10),
        Change(KEY_A, ChangeKind.CREATED, 5, None, StoredValue(11, [2]), 11),
    ]
    assert states == {KEY_A: KeyState(StoredValue(11, [2]), 5)}


def test_delete_after_a_write_in_the_same_command_deletes_the_new_value() -> None:
    states: dict[ValueKey, KeyState] = {}
    changes, errors = fold_command(states, [write(KEY_A, [1], 0), remove(KEY_A, 1)], iter([10, 11]))
    assert errors == []
    assert changes == [
        Change(KEY_A, ChangeKind.CREATED, 1, None, StoredValue(10, [1]), 10),
        Change(KEY_A, ChangeKind.DELETED, 2, StoredValue(10, [1]), None, 11),
    ]
    assert states == {KEY_A: KeyState(None, 2)}


@pytest.mark.parametrize(("second", "action"), [
    (remove(KEY_A, 1), "delete"),
    (write(KEY_A, [2], 1, must_exist=True), "update"),
], ids=["delete-twice", "delete-then-update"])
def test_a_delete_earlier_in_the_command_leaves_nothing_to_act_on(second: ValidWrite, action: str) -> None:
    before = KeyState(StoredValue(100, [1]), 3)
    states: dict[ValueKey, KeyState] = {KEY_A: before}
    changes, errors = fold_command(states, [remove(KEY_A, 0), second], iter([10, 11]))
    assert changes == []
    assert errors == [not_found(action, 1)]
    assert states == {KEY_A: before}  # the first delete, which was fine, is not applied either
    assert states[KEY_A] is before


@pytest.mark.parametrize("position", [0, 1, 2, 3], ids=lambda p: f"failing-at-{p}")
def test_one_failed_precondition_applies_none_of_the_command(position: int) -> None:
    b0 = KeyState(StoredValue(50, [2]), 7)
    states: dict[ValueKey, KeyState] = {KEY_B: b0}
    original = states
    good = [write(KEY_A, [1]), write(KEY_B, [3], must_exist=True), remove(KEY_B), write(KEY_C, [4])]
    items = [*good[:position], remove(KEY_D), *good[position:]]
    items = [ValidWrite(i, w.key, w.value, w.definition, w.op, w.must_exist) for i, w in enumerate(items)]
    changes, errors = fold_command(states, items, itertools.count(100))
    assert changes == []
    assert errors == [not_found("delete", position)]
    assert states is original
    assert states == {KEY_B: b0}
    assert states[KEY_B] is b0


def test_every_failed_precondition_of_a_command_is_reported_in_order() -> None:
    a0 = KeyState(StoredValue(1, [1]), 2)
    states: dict[ValueKey, KeyState] = {KEY_A: a0, KEY_B: KeyState(None, 4)}
    snapshot = dict(states)
    items = [
        write(KEY_A, [2], 0, must_exist=True),  # fine
        remove(KEY_B, 1),  # tombstone: nothing to delete
        write(KEY_C, [3], 2),  # fine
        write(KEY_D, [4], 3, must_exist=True),  # never written: nothing to update
        remove(KEY_C, 4),  # fine: written at 2
    ]
    changes, errors = fold_command(states, items, itertools.count(100))
    assert changes == []
    assert errors == [not_found("delete", 1), not_found("update", 3)]
    assert states == snapshot


def test_a_failed_command_does_not_disturb_the_next_one() -> None:
    a0 = KeyState(StoredValue(1, [1]), 2)
    states: dict[ValueKey, KeyState] = {KEY_A: a0}
    ids = itertools.count(100)
    _, errors = fold_command(states, [write(KEY_A, [2], 0), remove(KEY_B, 1)], ids)
    assert errors == [not_found("delete", 1)]
    changes, errors = fold_command(states, [write(KEY_A, [3], 0)], ids)
    assert errors == []
    # the sequence continues from the stored state, not from the refused command's writes
    assert len(changes) == 1
    assert (changes[0].kind, changes[0].seq, changes[0].before) == (ChangeKind.REPLACED, 3, a0.current)
    assert states[KEY_A].seq == 3


def test_version_ids_name_each_change_in_order() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(StoredValue(1, [1]), 1)}
    items = [write(KEY_A, [2], 0), remove(KEY_A, 1), write(KEY_A, [3], 2), remove(KEY_A, 3)]
    changes, errors = fold_command(states, items, iter([20, 21, 22, 23]))
    assert errors == []
    assert [(c.kind, c.seq, c.version_id) for c in changes] == [
        (ChangeKind.REPLACED, 2, 20), (ChangeKind.DELETED, 3, 21), (ChangeKind.CREATED, 4, 22),
        (ChangeKind.DELETED, 5, 23),
    ]
    for change in changes:
        if change.after is not None:
            assert change.version_id == change.after.id
        else:
            assert change.kind is ChangeKind.DELETED
    assert states == {KEY_A: KeyState(None, 5)}


# expected_version: the key's current seq (0 if never written; a deleted key keeps its seq)

A0 = StoredValue(1, [1, 2])


# (state of KEY_A or None if never written, the item, its change when it applies)
VERSION_MATCHES: list[tuple[KeyState | None, ValidWrite, Change]] = [
    (None, write(KEY_A, [1], expected_version=0), Change(KEY_A, ChangeKind.CREATED, 1, None, StoredValue(10, [1]), 10)),
    (KeyState(A0, 3), write(KEY_A, [4], expected_version=3),
     Change(KEY_A, ChangeKind.REPLACED, 4, A0, StoredValue(10, [4]), 10)),
    (KeyState(A0, 3), write(KEY_A, [4], must_exist=True, expected_version=3),
     Change(KEY_A, ChangeKind.REPLACED, 4, A0, StoredValue(10, [4]), 10)),
    (KeyState(A0, 3), remove(KEY_A, expected_version=3), Change(KEY_A, ChangeKind.DELETED, 4, A0, None, 10)),
    (KeyState(None, 5), write(KEY_A, [2], expected_version=5),
     Change(KEY_A, ChangeKind.CREATED, 6, None, StoredValue(10, [2]), 10)),
    (KeyState(A0, 3), edit(KEY_A, (3,), (1,), expected_version=3),
     Change(KEY_A, ChangeKind.REPLACED, 4, A0, StoredValue(10, [2, 3]), 10)),
]


@pytest.mark.parametrize("case", VERSION_MATCHES, ids=["never-written-at-0", "write", "must-exist-write", "delete",
                                                        "tombstone-keeps-its-seq", "edit"])
def test_an_item_at_its_expected_version_applies(case: tuple[KeyState | None, ValidWrite, Change]) -> None:
    state, item, change = case
    states: dict[ValueKey, KeyState] = {} if state is None else {KEY_A: state}
    changes, errors = fold_command(states, [item], iter([10]))
    assert errors == []
    assert changes == [change]
    assert states == {KEY_A: KeyState(change.after, change.seq)}


# (state of KEY_A or None if never written, the item; its version is not the key's seq)
VERSION_MISMATCHES: list[tuple[KeyState | None, ValidWrite, int]] = [
    (None, write(KEY_A, [1], 2, expected_version=1), 0),
    (None, edit(KEY_A, (1,), (), 2, expected_version=1), 0),
    (KeyState(A0, 3), write(KEY_A, [4], 2, expected_version=2), 3),
    (KeyState(A0, 3), write(KEY_A, [4], 2, expected_version=4), 3),
    (KeyState(A0, 3), write(KEY_A, [4], 2, expected_version=0), 3),
    (KeyState(A0, 3), write(KEY_A, [4], 2, must_exist=True, expected_version=1), 3),
    (KeyState(A0, 3), remove(KEY_A, 2, expected_version=2), 3),
    (KeyState(A0, 3), edit(KEY_A, (3,), (), 2, expected_version=2), 3),
    # an edit that would leave nothing, at the wrong version: the version is what is reported
    (KeyState(A0, 3), edit(KEY_A, (), (1, 2), 2, expected_version=2), 3),
    # a deleted key keeps its seq: not 0, and the version fails before there being nothing to delete
    (KeyState(None, 5), write(KEY_A, [2], 2, expected_version=0), 5),
    (KeyState(None, 5), write(KEY_A, [2], 2, must_exist=True, expected_version=4), 5),
    (KeyState(None, 5), remove(KEY_A, 2, expected_version=0), 5),
]


@pytest.mark.parametrize("case", VERSION_MISMATCHES, ids=[
    f"{'never-written' if s is None else ('tombstone' if s.current is None else 'current')}-at-{seq}"
    f"-{'delete' if w.op is Op.DELETE else ('edit' if isinstance(w.value, SetEdit) else 'write')}"
    f"{'-must-exist' if w.must_exist else ''}-expects-{w.expected_version}"
    for s, w, seq in VERSION_MISMATCHES
])
def test_an_item_not_at_its_expected_version_fails_the_command(case: tuple[KeyState | None, ValidWrite, int]) -> None:
    state, item, seq = case
    assert item.expected_version is not None
    states: dict[ValueKey, KeyState] = {} if state is None else {KEY_A: state}
    snapshot = dict(states)
    ids = iter([10])
    changes, errors = fold_command(states, [item], ids)
    assert changes == []
    assert errors == [precondition_failed(2, seq, item.expected_version)]
    assert states == snapshot
    assert next(ids) == 10


def test_a_version_mismatch_applies_none_of_the_command() -> None:
    b0 = KeyState(StoredValue(50, [2]), 7)
    states: dict[ValueKey, KeyState] = {KEY_B: b0}
    original = states
    items = [
        write(KEY_A, [1], 0, expected_version=0),  # fine
        write(KEY_B, [3], 1, expected_version=7),  # fine
        write(KEY_C, [4], 2),  # fine
        remove(KEY_B, 3, expected_version=6),  # stale: B is at 7 (and at 8 after item 1)
    ]
    changes, errors = fold_command(states, items, itertools.count(100))
    assert changes == []
    assert errors == [precondition_failed(3, 8, 6)]
    assert states is original
    assert states == {KEY_B: b0}
    assert states[KEY_B] is b0


def test_every_version_mismatch_and_missing_value_is_reported_in_order() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(A0, 2), KEY_B: KeyState(None, 4)}
    snapshot = dict(states)
    items = [
        write(KEY_A, [2], 0, expected_version=1),  # stale
        remove(KEY_B, 1),  # tombstone: nothing to delete
        write(KEY_C, [3], 2, expected_version=0),  # fine
        write(KEY_D, [4], 3, expected_version=9),  # never written: at 0
        edit(KEY_C, (), (3,), 4),  # C was written at 2: would leave nothing
    ]
    changes, errors = fold_command(states, items, itertools.count(100))
    assert changes == []
    assert errors == [
        precondition_failed(0, 2, 1),
        not_found("delete", 1),
        precondition_failed(3, 0, 9),
        edit_refused(4, LEAVES_NOTHING),
    ]
    assert states == snapshot


def test_expected_version_sees_the_items_before_it_in_the_command() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(A0, 3)}
    items = [write(KEY_A, [3], 0, expected_version=3), remove(KEY_A, 1, expected_version=4),
             write(KEY_A, [4], 2, expected_version=5)]
    changes, errors = fold_command(states, items, iter([10, 11, 12]))
    assert errors == []
    assert [(c.kind, c.seq) for c in changes] == [
        (ChangeKind.REPLACED, 4), (ChangeKind.DELETED, 5), (ChangeKind.CREATED, 6),
    ]
    assert states == {KEY_A: KeyState(StoredValue(12, [4]), 6)}

    # the version the key had before the command is stale once an earlier item has changed it
    states = {KEY_A: KeyState(A0, 3)}
    changes, errors = fold_command(states, [write(KEY_A, [3], 0), write(KEY_A, [4], 1, expected_version=3)],
                                   iter([10, 11]))
    assert changes == []
    assert errors == [precondition_failed(1, 4, 3)]
    assert states == {KEY_A: KeyState(A0, 3)}


def test_a_refused_command_leaves_the_version_where_it_was() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(A0, 3)}
    ids = itertools.count(100)
    _, errors = fold_command(states, [write(KEY_A, [3], 0, expected_version=3), remove(KEY_B, 1)], ids)
    assert errors == [not_found("delete", 1)]
    # the refused command's write did not move KEY_A to 4: 3 is still the version to expect
    changes, errors = fold_command(states, [write(KEY_A, [4], 0, expected_version=3)], ids)
    assert errors == []
    assert [(c.kind, c.seq, c.before) for c in changes] == [(ChangeKind.REPLACED, 4, A0)]


# set edits: resolved against the key's state when they apply


# (state of KEY_A or None if never written, the edit, the set it leaves)
EDITS: list[tuple[KeyState | None, SetEdit, list[int]]] = [
    (None, SetEdit((2, 1), ()), [2, 1]),
    (KeyState(None, 5), SetEdit((3,), ()), [3]),
    (KeyState(None, 5), SetEdit((3,), (1,)), [3]),
    (KeyState(A0, 3), SetEdit((3,), ()), [1, 2, 3]),
    (KeyState(A0, 3), SetEdit((2, 4), ()), [1, 2, 4]),
    (KeyState(A0, 3), SetEdit((), (1,)), [2]),
    (KeyState(A0, 3), SetEdit((4, 3), (1,)), [2, 4, 3]),
    (KeyState(A0, 3), SetEdit((), (4,)), [1, 2]),
    (KeyState(A0, 3), SetEdit((), ()), [1, 2]),
]


@pytest.mark.parametrize("case", EDITS, ids=[
    f"{'never-written' if s is None else ('tombstone' if s.current is None else 'current')}"
    f"+{list(e.add)}-{list(e.remove)}" for s, e, _ in EDITS
])
def test_an_edit_is_a_replace_with_the_set_it_makes_of_the_current_one(
    case: tuple[KeyState | None, SetEdit, list[int]]
) -> None:
    state, set_edit, result = case
    states: dict[ValueKey, KeyState] = {} if state is None else {KEY_A: state}
    before = None if state is None else state.current
    seq = 1 if state is None else state.seq + 1
    kind = ChangeKind.CREATED if before is None else ChangeKind.REPLACED
    changes, errors = fold_command(states, [edit(KEY_A, set_edit.add, set_edit.remove, external=PLANE)], iter([10]))
    assert errors == []
    assert changes == [Change(KEY_A, kind, seq, before, StoredValue(10, result, PLANE), 10)]
    assert changes[0].after is not None and type(changes[0].after.value) is list  # never the SetEdit itself
    assert states == {KEY_A: KeyState(StoredValue(10, result, PLANE), seq)}


def test_an_edit_does_not_change_the_stored_set_in_place() -> None:
    stored = [1, 2]
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(StoredValue(1, stored), 1)}
    changes, errors = fold_command(states, [edit(KEY_A, (3,), (1,))], iter([10]))
    assert errors == []
    assert stored == [1, 2]
    assert changes[0].before == StoredValue(1, [1, 2])


@pytest.mark.parametrize(("earlier", "set_edit", "result"), [
    (write(KEY_A, [3, 4], 0), SetEdit((1,), (4,)), [3, 1]),
    (remove(KEY_A, 0), SetEdit((4,), ()), [4]),
    (edit(KEY_A, (3,), (1,), 0), SetEdit((1,), (2,)), [3, 1]),
], ids=["after-a-write", "after-a-delete", "after-an-edit"])
def test_an_edit_sees_the_items_before_it_in_the_command(
    earlier: ValidWrite, set_edit: SetEdit, result: list[int]
) -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(A0, 3)}
    changes, errors = fold_command(states, [earlier, edit(KEY_A, set_edit.add, set_edit.remove, 1)], iter([10, 11]))
    assert errors == []
    assert len(changes) == 2
    assert changes[1].before == changes[0].after
    assert (changes[1].seq, changes[1].after) == (5, StoredValue(11, result))
    assert states == {KEY_A: KeyState(StoredValue(11, result), 5)}


def test_two_edits_of_a_never_written_key_chain() -> None:
    # Two edits of a never-written key in one command chain: the second sees what the first made.
    states: dict[ValueKey, KeyState] = {}
    changes, errors = fold_command(states, [edit(KEY_A, (1, 2), (), 0), edit(KEY_A, (3,), (1,), 1)], iter([10, 11]))
    assert errors == []
    assert [(c.kind, c.seq, c.after) for c in changes] == [
        (ChangeKind.CREATED, 1, StoredValue(10, [1, 2])),
        (ChangeKind.REPLACED, 2, StoredValue(11, [2, 3])),
    ]


# (state of KEY_A or None if never written, earlier items of the command, the refused edit, its message)
EDITS_REFUSED: list[tuple[KeyState | None, list[ValidWrite], ValidWrite, ItemError]] = [
    (KeyState(A0, 3), [], edit(KEY_A, (), (1, 2), 1), edit_refused(1, LEAVES_NOTHING)),
    (None, [], edit(KEY_A, (), (1,), 1), edit_refused(1, LEAVES_NOTHING)),
    (None, [], edit(KEY_A, (), (), 1), edit_refused(1, LEAVES_NOTHING)),
    (KeyState(None, 5), [], edit(KEY_A, (), (2,), 1), edit_refused(1, LEAVES_NOTHING)),
    # an earlier item of the command left the set it would empty
    (KeyState(A0, 3), [write(KEY_A, [4], 0)], edit(KEY_A, (), (4,), 1), edit_refused(1, LEAVES_NOTHING)),
    (KeyState(A0, 3), [remove(KEY_A, 0)], edit(KEY_A, (), (1,), 1), edit_refused(1, LEAVES_NOTHING)),
    (KeyState(A0, 3), [edit(KEY_A, (), (1,), 0)], edit(KEY_A, (), (2,), 1), edit_refused(1, LEAVES_NOTHING)),
    # the field's rules are checked on the set the edit makes
    (KeyState(StoredValue(1, [1, 2]), 3), [], edit(KEY_PAIR, (3,), (), 1, definition=PAIR),
     edit_refused(1, "must list at most 2 items", PAIR)),
    (None, [], edit(KEY_PAIR, (1, 2, 3), (), 1, definition=PAIR), edit_refused(1, "must list at most 2 items", PAIR)),
]


@pytest.mark.parametrize("case", EDITS_REFUSED, ids=[
    "removes-everything", "removes-from-nothing", "empty-edit-of-nothing", "removes-from-a-tombstone",
    "after-a-write", "after-a-delete", "after-an-edit", "over-max-count", "over-max-count-from-nothing",
])
def test_an_edit_that_does_not_fit_fails_the_command(
    case: tuple[KeyState | None, list[ValidWrite], ValidWrite, ItemError]
) -> None:
    state, earlier, refused, error = case
    key = refused.key
    states: dict[ValueKey, KeyState] = {} if state is None else {key: state}
    original = states
    snapshot = dict(states)
    changes, errors = fold_command(states, [*earlier, refused, write(KEY_B, [1], 2)], itertools.count(100))
    assert changes == []
    assert errors == [error]
    assert states is original
    assert states == snapshot


def test_an_edit_within_the_rules_applies() -> None:
    states: dict[ValueKey, KeyState] = {KEY_PAIR: KeyState(StoredValue(1, [1, 2]), 3)}
    changes, errors = fold_command(states, [edit(KEY_PAIR, (3,), (1,), definition=PAIR)], iter([10]))
    assert errors == []
    assert changes == [Change(KEY_PAIR, ChangeKind.REPLACED, 4, StoredValue(1, [1, 2]), StoredValue(10, [2, 3]), 10)]


def test_an_edit_of_no_value_that_must_exist_is_not_found_not_invalid() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(None, 5)}
    changes, errors = fold_command(states, [edit(KEY_A, (), (1,), 0, must_exist=True)], iter([10]))
    assert changes == []
    assert errors == [not_found("update", 0)]
    assert states == {KEY_A: KeyState(None, 5)}
