"""Replace semantics: a write overrides the current value of its key with a new value of a new id.

The fold is pure: given the stored state of each key and the writes in the order they were accepted, it
says what each key holds afterwards and which changes to announce, each with the key's next sequence number.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from enum import StrEnum

from cfv.domain.values import JSON
from cfv.domain.writes import ValidWrite, ValueKey


class ChangeKind(StrEnum):
    """What happened to a key; also the last word of an event's routing key."""

    CREATED = "created"
    REPLACED = "replaced"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class StoredValue:
    """A value with its id."""

    id: int
    value: JSON


@dataclass(frozen=True, slots=True)
class KeyState:
    """What a key holds: its current value (None once deleted) and the sequence of its last change."""

    current: StoredValue | None
    seq: int


EMPTY = KeyState(current=None, seq=0)


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one key, numbered by the key's gapless sequence."""

    key: ValueKey
    kind: ChangeKind
    seq: int
    before: StoredValue | None
    after: StoredValue | None


def replace(key: ValueKey, state: KeyState, new: StoredValue) -> Change:
    """Return the change that makes ``new`` the current value of ``key``, which is in ``state``.

    A write never merges into what is there: a choice write replaces the whole set.
    """
    kind = ChangeKind.CREATED if state.current is None else ChangeKind.REPLACED
    return Change(key=key, kind=kind, seq=state.seq + 1, before=state.current, after=new)


def fold_writes(
    states: MutableMapping[ValueKey, KeyState],
    writes: Iterable[ValidWrite],
    new_ids: Iterator[int],
) -> list[Change]:
    """Apply ``writes`` in order to ``states`` (updated in place); return their changes in the same order.

    Keys missing from ``states`` have never held a value. Each write takes the next id from ``new_ids``.
    """
    changes: list[Change] = []
    for write in writes:
        state = states.get(write.key, EMPTY)
        change = replace(write.key, state, StoredValue(next(new_ids), write.value))
        states[write.key] = KeyState(change.after, change.seq)
        changes.append(change)
    return changes
