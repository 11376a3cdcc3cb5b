"""Replace semantics: a write overrides the current value of its key with a new value of a new id; a
delete removes it.

The fold is pure: given the stored state of each key and a command's writes in the order they were
accepted, it says what each key holds afterwards and which changes to announce, each with the key's next
sequence number, or why the command cannot apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from enum import StrEnum
from typing import NamedTuple

from cfv.domain.values import JSON, InvalidValue, SetEdit, apply_edit
from cfv.domain.writes import NO_REF, ErrorType, ExternalRef, ItemError, Op, ValidWrite, ValueKey


class ChangeKind(StrEnum):
    """What happened to a key; also the last word of an event's routing key."""

    CREATED = "created"
    REPLACED = "replaced"
    DELETED = "deleted"


class StoredValue(NamedTuple):
    """A value with its id, and where it comes from if it was synced from another system."""

    id: int
    value: JSON
    external: ExternalRef = NO_REF


class KeyState(NamedTuple):
    """What a key holds: its current value (None once deleted) and the sequence of its last change."""

    current: StoredValue | None
    seq: int


EMPTY = KeyState(current=None, seq=0)


class Change(NamedTuple):
    """One change of one key, numbered by the key's gapless sequence.

    ``version_id`` names the change in the key's history: the new value's id for a write, a fresh id for a
    delete (whose ``after`` is None).
    """

    key: ValueKey
    kind: ChangeKind
    seq: int
    before: StoredValue | None
    after: StoredValue | None
    version_id: int


def replace(key: ValueKey, state: KeyState, new: StoredValue) -> Change:
    """Return the change that makes ``new`` the current value of ``key``, which is in ``state``.

    A write never merges into what is there: a choice write replaces the whole set.
    """
    kind = ChangeKind.CREATED if state.current is None else ChangeKind.REPLACED
    return Change(key=key, kind=kind, seq=state.seq + 1, before=state.current, after=new, version_id=new.id)


def delete(key: ValueKey, state: KeyState, version_id: int) -> Change:
    """Return the change that removes the current value of ``key``, which is in ``state`` and holds one."""
    assert state.current is not None
    return Change(key=key, kind=ChangeKind.DELETED, seq=state.seq + 1, before=state.current, after=None,
                  version_id=version_id)


def fold_command(
    states: MutableMapping[ValueKey, KeyState],
    writes: Iterable[ValidWrite],
    new_ids: Iterator[int],
) -> tuple[list[Change], list[ItemError]]:
    """Apply one command's ``writes`` in order to ``states``; return their changes, in the same order.

    All or nothing: if a write's precondition fails (an update or a delete with no value to act on, a value
    not at its expected version, a set edit that does not fit), return no changes and every such error, and
    leave ``states`` as it was. Keys missing from ``states`` have never
    held a value. Each change takes the next id from ``new_ids``.
    """
    overlay: dict[ValueKey, KeyState] = {}
    changes: list[Change] = []
    errors: list[ItemError] = []
    for write in writes:
        state = overlay.get(write.key) or states.get(write.key, EMPTY)
        error = _precondition_error(write, state)
        value = write.value
        if error is None and isinstance(value, SetEdit):
            try:
                value = apply_edit(write.definition, value, state.current.value if state.current else None)
            except InvalidValue as invalid:
                error = ItemError(ErrorType.VALIDATION, f"{write.definition.name}: {invalid}", "value",
                                  write.index, write.key.custom_field_id)
        if error is None and write.definition.unique and write.op is Op.WRITE:
            error = _unique_error(write, value, overlay, states)
        if error is not None:
            errors.append(error)
            continue
        if write.op is Op.DELETE:
            change = delete(write.key, state, next(new_ids))
        else:
            change = replace(write.key, state, StoredValue(next(new_ids), value, write.external))
        overlay[write.key] = KeyState(change.after, change.seq)
        changes.append(change)
    if errors:
        return [], errors
    states.update(overlay)
    return changes, []


def _unique_error(write: ValidWrite, value: JSON, overlay: Mapping[ValueKey, KeyState],
                  states: Mapping[ValueKey, KeyState]) -> ItemError | None:
    """A conflict if another subject's value of this unique field equals ``value``.

    ``states`` must hold every key of the field whose stored value equals a value being written.
    """
    for key in {**states, **overlay}:
        if key.custom_field_id != write.key.custom_field_id or key == write.key:
            continue
        current = (overlay.get(key) or states[key]).current
        if current is not None and current.value == value:
            # Not naming which subject: the writer may not be allowed to read it.
            return ItemError(ErrorType.CONFLICT, f"{write.definition.name}: {value!r} is already the value of "
                             f"another {key.subject_type}; values of this field are unique", "value",
                             write.index, write.key.custom_field_id)
    return None


def _precondition_error(write: ValidWrite, state: KeyState) -> ItemError | None:
    name, field_id = write.definition.name, write.key.custom_field_id
    if write.expected_version is not None and write.expected_version != state.seq:
        return ItemError(ErrorType.PRECONDITION, f"{name}: the value is at version {state.seq}, not "
                         f"{write.expected_version}; read it again", "expected_version", write.index, field_id)
    if state.current is None and (write.op is Op.DELETE or write.must_exist):
        action = "delete" if write.op is Op.DELETE else "update"
        return ItemError(ErrorType.NOT_FOUND, f"{name}: there is no value to {action}", "value", write.index,
                         field_id)
    return None
