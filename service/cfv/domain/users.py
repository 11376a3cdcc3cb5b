"""Which users a user relation may name.

A relation to users names users of the workspace: Kantata fields by their integer ids, work-item properties
(Plane) by their UUIDs. A user nobody knows in the workspace is refused. A *deactivated* user (``DELETE
/api/v1/users/{id}``: users are never erased) stays in the values that already name them, so history, reads
and a form saved back unchanged keep working; but a write may not add them to a value that did not name them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from cfv.domain.changes import EMPTY, KeyState
from cfv.domain.fields import FieldDefinition, RelationTarget, ValueType
from cfv.domain.values import JSON
from cfv.domain.writes import ErrorType, ItemError, Op, ValidWrite, ValueKey

#: Users known to a batch: (workspace id, user id or UUID) → whether the user is active.
KnownUsers = Mapping[tuple[int, int | str], bool]


def names_users(definition: FieldDefinition) -> bool:
    """Whether the field is a relation to users."""
    return definition.value_type is ValueType.RELATION and definition.relation_target is RelationTarget.USER


def users_named(workspace_id: int, writes: Iterable[ValidWrite]) -> list[tuple[int, int | str]]:
    """The (workspace, user) pairs the writes of a user relation name: what to look up."""
    return [(workspace_id, target) for w in writes if w.op is Op.WRITE and names_users(w.definition)
            and isinstance(w.value, list) for target in w.value if isinstance(target, int | str)]


def refused_users(workspace_id: int, targets: Sequence[JSON], users: KnownUsers,
                  kept: Collection[JSON] = ()) -> tuple[list[JSON], list[JSON]]:
    """Of the users ``targets`` name: those unknown in the workspace, and the deactivated ones not ``kept`` (already
    in the value being replaced; a field's default keeps none)."""
    unknown = [target for target in targets if (workspace_id, target) not in users]
    added_inactive = [target for target in targets
                      if users.get((workspace_id, target)) is False and target not in kept]
    return unknown, added_inactive


def user_errors(workspace_id: int, writes: Sequence[ValidWrite], users: KnownUsers,
                states: Mapping[ValueKey, KeyState]) -> list[ItemError]:
    """The writes that name a user unknown in the workspace, or add a deactivated one (``states``: what each key
    holds before the writes)."""
    errors = []
    for w in writes:
        if w.op is not Op.WRITE or not names_users(w.definition) or not isinstance(w.value, list):
            continue
        before = states.get(w.key, EMPTY).current
        kept = set(before.value) if before is not None and isinstance(before.value, list) else set()
        unknown, added_inactive = refused_users(workspace_id, w.value, users, kept)
        name = w.definition.name
        if unknown:
            errors.append(ItemError(ErrorType.VALIDATION, f"{name}: no such user in this workspace: "
                                    f"{listed(unknown)}", "value", w.index, w.definition.id))
        elif added_inactive:
            errors.append(ItemError(ErrorType.VALIDATION, f"{name}: deactivated user(s) {listed(added_inactive)} "
                                    "cannot be added (a value that names them already may keep them)", "value",
                                    w.index, w.definition.id))
    return errors


def listed(targets: Sequence[JSON]) -> str:
    """Users named in a message: ``5, 999999``."""
    return ", ".join(str(target) for target in targets)
