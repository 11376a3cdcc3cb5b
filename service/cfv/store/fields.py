"""Field definitions in PostgreSQL: custom fields, their choices, and custom field sets.

Keyword-only functions over the named queries of ``sql/gateway.sql``; the definition core
(:mod:`cfv.gateway.definitions`) changes definitions through them, and the faces read them. ``db`` is a pool or a
connection (in a transaction, for changes that must go together).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from cfv.store.database import Connection
from cfv.store.queries import query

Db: TypeAlias = "Connection | asyncpg.Pool[Any]"
Row: TypeAlias = Any  # an asyncpg.Record: read by column name


async def lock_workspace(db: Connection, *, workspace_id: int) -> None:
    """Take the workspace's apply lock (the worker's) for the rest of the transaction."""
    await db.execute(query("lock_workspace"), workspace_id)


# --- fields -------------------------------------------------------------------------------------------------


async def list_fields(db: Db, *, workspace_id: int, limit: int, offset: int) -> list[Row]:
    """A page of the workspace's live fields, by id."""
    return list(await db.fetch(query("list_fields"), workspace_id, limit, offset))


async def count_fields(db: Db, *, workspace_id: int) -> int:
    """How many live fields the workspace has."""
    count: int = await db.fetchval(query("count_fields"), workspace_id)
    return count


async def get_field(db: Db, *, workspace_id: int, field_id: int) -> Row | None:
    """A live field of the workspace (None: none such)."""
    row: Row | None = await db.fetchrow(query("get_field"), field_id, workspace_id)
    return row


async def field_choices(db: Db, *, field_ids: Sequence[int]) -> list[Row]:
    """The live choices of the fields (id, custom_field_id, label, position), in order."""
    return list(await db.fetch(query("field_choices"), list(field_ids)))


async def insert_field(db: Db, *, workspace_id: int, project_id: uuid.UUID | None = None, name: str,
                       description: str | None, subject_type: str, value_type: str, relation_target: str | None,
                       relation_multi: bool, write_access: str, read_access: str, required: bool,
                       default_value: Any, unique: bool = False, active: bool = True, settings: Any = None,
                       validation_rules: Any = None, external_id: str | None,
                       external_source: str | None) -> Row:
    """Define a field (of a project: a Plane property); the new row."""
    row: Row | None = await db.fetchrow(
        query("insert_field"), workspace_id, project_id, name, description, subject_type, value_type,
        relation_target, relation_multi, write_access, read_access, required, default_value, unique, active,
        settings, validation_rules, external_id, external_source)
    assert row is not None
    return row


async def update_field(db: Db, *, workspace_id: int, field_id: int, name: str | None, description: str | None,
                       write_access: str | None = None, read_access: str | None = None, required: bool | None,
                       active: bool | None = None, settings: Any = None, validation_rules: Any = None,
                       default_value: Any, set_default: bool, external_id: str | None,
                       external_source: str | None) -> Row | None:
    """Change what is given (None keeps it; the default only with ``set_default``); the changed row, or None if
    the field is gone."""
    row: Row | None = await db.fetchrow(
        query("update_field"), field_id, workspace_id, name, description, write_access, read_access, required,
        active, settings, validation_rules, default_value, set_default, external_id, external_source)
    return row


# --- choices (Kantata's choices; Plane's options are the same rows, see store/plane.py) ----------------------


async def insert_choices(db: Db, *, field_id: int, labels: Sequence[str], start: int) -> list[Row]:
    """Add choices labelled ``labels`` at positions from ``start``; the new rows."""
    return list(await db.fetch(query("insert_choices"), field_id, list(labels), start))


async def next_choice_position(db: Db, *, field_id: int) -> int:
    """The position after the field's last choice."""
    position: int = await db.fetchval(query("next_choice_position"), field_id)
    return position


async def choices_in_workspace(db: Db, *, workspace_id: int, field_ids: Sequence[int] | None, limit: int,
                               offset: int) -> list[Row]:
    """A page of the workspace's live choices (of the given fields, if any)."""
    return list(await db.fetch(query("choices_in_workspace"), workspace_id,
                               list(field_ids) if field_ids is not None else None, limit, offset))


async def count_choices_in_workspace(db: Db, *, workspace_id: int, field_ids: Sequence[int] | None) -> int:
    """How many live choices the workspace has (of the given fields, if any)."""
    count: int = await db.fetchval(query("count_choices_in_workspace"), workspace_id,
                                   list(field_ids) if field_ids is not None else None)
    return count


async def choice_in_workspace(db: Db, *, workspace_id: int, choice_id: int) -> Row | None:
    """A live choice of a live field of the workspace."""
    row: Row | None = await db.fetchrow(query("choice_in_workspace"), workspace_id, choice_id)
    return row


async def insert_choice(db: Db, *, field_id: int, label: str, position: int | None = None,
                        description: str | None = None, is_default: bool = False, active: bool = True,
                        external_id: str | None, external_source: str | None) -> Row:
    """Add a choice (at the end unless ``position``); the new row."""
    row: Row | None = await db.fetchrow(query("insert_choice"), field_id, label, position, external_id,
                                        external_source, description, is_default, active)
    assert row is not None
    return row


async def update_choice(db: Db, *, choice_id: int, label: str | None, position: int | None = None,
                        description: str | None = None, is_default: bool | None = None, active: bool | None = None,
                        external_id: str | None, external_source: str | None) -> Row | None:
    """Change what is given (None keeps it); the changed row, or None if the choice is gone."""
    row: Row | None = await db.fetchrow(query("update_choice"), choice_id, label, position, external_id,
                                        external_source, description, is_default, active)
    return row


async def choice_in_use(db: Db, *, field_id: int, choice_id: int) -> bool:
    """Whether a current value of the field holds the choice."""
    return bool(await db.fetchval(query("choice_in_use"), field_id, choice_id))


async def delete_choice(db: Db, *, choice_id: int) -> bool:
    """Delete the choice; False if it was gone already."""
    return await db.fetchval(query("delete_choice"), choice_id) is not None


# --- sets ---------------------------------------------------------------------------------------------------


async def list_sets(db: Db, *, workspace_id: int, set_id: int | None = None, limit: int, offset: int) -> list[Row]:
    """A page of the workspace's live sets (only ``set_id``, if given), each with its live fields."""
    return list(await db.fetch(query("list_sets"), workspace_id, set_id, limit, offset))


async def get_set(db: Db, *, workspace_id: int, set_id: int) -> Row | None:
    """A live set of the workspace, with its live fields."""
    rows = await list_sets(db, workspace_id=workspace_id, set_id=set_id, limit=1, offset=0)
    return rows[0] if rows else None


async def count_sets(db: Db, *, workspace_id: int) -> int:
    """How many live sets the workspace has."""
    count: int = await db.fetchval(query("count_sets"), workspace_id)
    return count


async def fields_for_set(db: Db, *, workspace_id: int, field_ids: Sequence[int], subject_type: str) -> set[int]:
    """Which of ``field_ids`` a set of ``subject_type`` may list: live fields of the workspace of that type."""
    return {r["id"] for r in await db.fetch(query("fields_for_set"), workspace_id, list(field_ids), subject_type)}


async def insert_set(db: Db, *, workspace_id: int, name: str, subject_type: str, field_ids: Sequence[int]) -> int:
    """Create a set; its id."""
    set_id: int = await db.fetchval(query("insert_set"), workspace_id, name, subject_type, list(field_ids))
    return set_id


async def update_set(db: Db, *, workspace_id: int, set_id: int, name: str | None,
                     field_ids: Sequence[int] | None) -> None:
    """Rename a set, or give it another list of fields (None keeps each)."""
    await db.execute(query("update_set"), workspace_id, set_id, name,
                     list(field_ids) if field_ids is not None else None)


async def delete_set(db: Db, *, workspace_id: int, set_id: int) -> bool:
    """Delete a set; False if there was no such live set."""
    return await db.fetchval(query("delete_set"), workspace_id, set_id) is not None


async def fields_by_ids(db: Db, *, workspace_id: int, field_ids: Sequence[int]) -> list[Row]:
    """The workspace's fields among ``field_ids``, deleted ones included (a value read names its field)."""
    return await db.fetch(query("fields_by_ids"), workspace_id, list(field_ids))


async def choices_by_ids(db: Db, *, choice_ids: Sequence[int]) -> list[Row]:
    """The choices ``choice_ids`` (id, custom_field_id, label, position); the ids come from values of one
    workspace, whose choices they are."""
    return await db.fetch(query("choices_by_ids"), list(choice_ids))
