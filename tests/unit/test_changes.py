"""Replace semantics and the fold of writes into per-key changes with gapless sequences."""

from __future__ import annotations

import itertools
from typing import Any

from cfv.domain.changes import EMPTY, Change, ChangeKind, KeyState, StoredValue, fold_command, replace
from cfv.domain.fields import FieldDefinition, SubjectType, ValueType
from cfv.domain.writes import ValidWrite, ValueKey

TAGS = FieldDefinition(6, 10, "Tags", SubjectType.STORY, ValueType.MULTI, choice_ids=frozenset({1, 2, 3, 4}))
KEY_A = ValueKey(SubjectType.STORY, "1", TAGS.id)
KEY_B = ValueKey(SubjectType.STORY, "2", TAGS.id)
KEY_C = ValueKey(SubjectType.STORY, "3", TAGS.id)


def write(key: ValueKey, value: Any, index: int = 0) -> ValidWrite:
    return ValidWrite(index, key, value, TAGS)


def test_empty_is_no_value_at_sequence_zero() -> None:
    assert EMPTY.current is None
    assert EMPTY.seq == 0


def test_first_write_is_created_with_seq_1() -> None:
    new = StoredValue(100, [1, 2])
    change = replace(KEY_A, EMPTY, new)
    assert change == Change(key=KEY_A, kind=ChangeKind.CREATED, seq=1, before=None, after=new)
    assert change.kind is ChangeKind.CREATED


def test_second_write_replaces_with_seq_2_and_the_previous_value_before() -> None:
    first = StoredValue(100, [1, 2])
    second = StoredValue(101, [3])
    change = replace(KEY_A, KeyState(current=first, seq=1), second)
    assert change == Change(key=KEY_A, kind=ChangeKind.REPLACED, seq=2, before=first, after=second)
    assert change.kind is ChangeKind.REPLACED


def test_write_after_a_tombstone_is_created_with_the_next_seq() -> None:
    new = StoredValue(200, [4])
    change = replace(KEY_A, KeyState(current=None, seq=5), new)
    assert change == Change(key=KEY_A, kind=ChangeKind.CREATED, seq=6, before=None, after=new)


def test_fold_from_a_tombstone_is_created_with_the_next_seq() -> None:
    states: dict[ValueKey, KeyState] = {KEY_A: KeyState(current=None, seq=5)}
    changes, _ = fold_command(states, [write(KEY_A, [4])], iter([200]))
    assert changes == [Change(KEY_A, ChangeKind.CREATED, 6, None, StoredValue(200, [4]))]
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
    changes, _ = fold_command(states, writes, ids)

    a1, a2, a3 = StoredValue(101, [1]), StoredValue(103, [2]), StoredValue(106, [4, 1])
    b1, b2 = StoredValue(102, [1]), StoredValue(105, [1, 3])
    c1 = StoredValue(104, [3])
    assert changes == [
        Change(KEY_A, ChangeKind.CREATED, 1, None, a1),
        Change(KEY_B, ChangeKind.REPLACED, 8, b0, b1),
        Change(KEY_A, ChangeKind.REPLACED, 2, a1, a2),
        Change(KEY_C, ChangeKind.CREATED, 1, None, c1),
        Change(KEY_B, ChangeKind.REPLACED, 9, b1, b2),
        Change(KEY_A, ChangeKind.REPLACED, 3, a2, a3),
    ]
    # new ids are taken in order, one per write, and no more
    assert [c.after.id for c in changes if c.after is not None] == [101, 102, 103, 104, 105, 106]
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
    assert first == Change(KEY_A, ChangeKind.CREATED, 1, None, StoredValue(10, [1]))
    assert second == Change(KEY_A, ChangeKind.REPLACED, 2, StoredValue(10, [1]), StoredValue(11, [2]))
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
