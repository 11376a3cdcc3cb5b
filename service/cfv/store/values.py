"""Reads of current values and their history, each filtered by what the reader may see (fields' read_access,
the SQL function ``cfv_allowed``, the twin of :mod:`cfv.domain.access`). Values are written by the worker only
(:mod:`cfv.store.batches`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cfv.store.database import Connection, Executor
from cfv.store.queries import query


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: what they may see depends on their account role and project memberships."""

    user_id: int
    account_role: str


@dataclass(frozen=True, slots=True)
class ValueFilter:
    """Which current values of one subject type a listing shows, and in what order (value ids break ties)."""

    workspace_id: int
    subject_type: str
    subject_ids: Sequence[str] | None = None
    field_ids: Sequence[int] | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    order: str = "id"  # or "updated_at"
    descending: bool = False


async def read_time(connection: Connection) -> datetime:
    """The transaction's snapshot time (a listing's ``as_of``)."""
    moment: datetime = await connection.fetchval(query("read_time"))
    return moment


async def list_current(connection: Connection, *, where: ValueFilter, reader: Reader, limit: int, offset: int,
                       as_of: datetime | None = None) -> list[asyncpg.Record]:
    """A page of the values ``where`` selects that ``reader`` may see, as they are now or as they stood at
    ``as_of``; each row carries the ``total`` of the listing."""
    arguments = (where.workspace_id, where.subject_type, _list(where.subject_ids), _list(where.field_ids),
                 where.updated_after, where.updated_before, where.order, where.descending, limit, offset)
    if as_of is None:
        return await connection.fetch(query("list_values"), *arguments, reader.user_id, reader.account_role)
    return await connection.fetch(query("list_values_as_of"), *arguments, as_of, reader.user_id,
                                  reader.account_role)


async def current_by_ids(executor: Executor, *, workspace_id: int, ids: Sequence[int],
                         reader: Reader) -> list[asyncpg.Record]:
    """The current values among ``ids`` (value ids) that ``reader`` may see."""
    return await executor.fetch(query("values_by_ids"), workspace_id, list(ids), reader.user_id,
                                reader.account_role)


async def history(executor: Executor, *, workspace_id: int, subject_type: str, subject_id: str, field_id: int,
                  reader: Reader) -> list[asyncpg.Record]:
    """Every version of one value, oldest first (a delete is a version with a null value), if ``reader`` may see
    it."""
    return await executor.fetch(query("value_history"), workspace_id, subject_type, subject_id, field_id,
                                reader.user_id, reader.account_role)


def _list(items: Sequence[object] | None) -> list[object] | None:
    return list(items) if items is not None else None


async def readable_ordinals(executor: Executor, *, workspace_id: int, reader: Reader, subject_types: Sequence[str],
                            subject_ids: Sequence[str], field_ids: Sequence[int]) -> set[int]:
    """Which of the values given as parallel lists ``reader`` may see, by ordinal (1-based)."""
    rows = await executor.fetch(query("readable_values"), workspace_id, reader.user_id, reader.account_role,
                                list(subject_types), list(subject_ids), list(field_ids))
    return {n for (n,) in rows}
