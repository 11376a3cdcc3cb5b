"""The Plane face's definitions in PostgreSQL: projects, work-item properties (custom fields of a project) and
their options (choices), and reads of work items' values.

Keyword-only functions over the named queries of ``sql/plane.sql``. Every query is scoped by workspace (or by a
field found in one), so another workspace's ids find nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from cfv.store.fields import Db, Row
from cfv.store.queries import query

# --- projects -----------------------------------------------------------------------------------------------


async def insert_project(db: Db, *, workspace_id: int, project_id: uuid.UUID | None, name: str,
                         identifier: str, description: str | None) -> Row | None:
    """Create a project (its id chosen unless given); None when the id or the identifier is taken."""
    row: Row | None = await db.fetchrow(query("insert_project"), workspace_id, project_id, name, identifier,
                                        description)
    return row


async def list_projects(db: Db, *, workspace_id: int) -> list[Row]:
    """The workspace's live projects."""
    return list(await db.fetch(query("list_projects"), workspace_id))


async def get_project(db: Db, *, workspace_id: int, project_id: uuid.UUID) -> Row | None:
    """A live project of the workspace."""
    row: Row | None = await db.fetchrow(query("get_project"), workspace_id, project_id)
    return row


async def update_project(db: Db, *, workspace_id: int, project_id: uuid.UUID, name: str | None,
                         identifier: str | None, description: str | None) -> Row | None:
    """Change what is given; the changed row, or None if the project is gone (UniqueViolationError: the
    identifier is another project's)."""
    row: Row | None = await db.fetchrow(query("update_project"), workspace_id, project_id, name, identifier,
                                        description)
    return row


# --- properties ---------------------------------------------------------------------------------------------


async def list_properties(db: Db, *, workspace_id: int, project_id: uuid.UUID) -> list[Row]:
    """The project's live properties, by id."""
    return list(await db.fetch(query("list_properties"), workspace_id, project_id))


async def get_property(db: Db, *, workspace_id: int, project_id: uuid.UUID, property_id: uuid.UUID) -> Row | None:
    """A live property (by its UUID) of a live project of the workspace."""
    row: Row | None = await db.fetchrow(query("get_property"), workspace_id, project_id, property_id)
    return row


# --- options ------------------------------------------------------------------------------------------------


async def list_options(db: Db, *, field_id: int) -> list[Row]:
    """A property's live options, in order."""
    return list(await db.fetch(query("list_options"), field_id))


async def get_option(db: Db, *, field_id: int, option_id: uuid.UUID) -> Row | None:
    """A live option (by its UUID) of the property."""
    row: Row | None = await db.fetchrow(query("get_option"), field_id, option_id)
    return row


async def option_uuids(db: Db, *, field_ids: Sequence[int]) -> dict[int, str]:
    """The UUID of every option (deleted ones too) of the properties, by choice id."""
    return {r["id"]: str(r["uuid"]) for r in await db.fetch(query("option_uuids"), list(field_ids))}


async def clear_other_defaults(db: Db, *, field_id: int, option_id: int) -> list[Row]:
    """Unmark the property's other default options (a single-choice property has at most one); the rows changed,
    as changed."""
    return list(await db.fetch(query("clear_other_defaults"), field_id, option_id))


# --- values -------------------------------------------------------------------------------------------------


async def work_item_values(db: Db, *, workspace_id: int, work_item: str, field_id: int | None,
                           project_id: uuid.UUID, user_id: int, account_role: str) -> list[Row]:
    """The current values of a work item (of one property, or all the project's) the reader may read."""
    return list(await db.fetch(query("work_item_values"), workspace_id, work_item, field_id, project_id, user_id,
                               account_role))
