"""One definition of each vocabulary (issue 13): subject types, value types, relation targets, account roles and
project permissions are defined once in ``cfv.domain``; the database's CHECK constraints (read from the real,
migrated schema) and the wire schemas (``cfv_schemas``) must say the same."""

from __future__ import annotations

import re
import typing
from typing import Any

import asyncpg
import pytest
from cfv.domain.access import ACCOUNT_ADMIN, ACCOUNT_ROLES, PROJECT_PERMISSIONS
from cfv.domain.fields import RelationTarget, SubjectType, ValueType
from cfv_schemas import kantata as kantata_wire

ACCOUNT_LEVELS = set(ACCOUNT_ROLES)
PROJECT_LEVELS = set(PROJECT_PERMISSIONS)


async def _allowed(db: asyncpg.Connection[Any], table: str, column: str) -> set[str]:
    """The values a CHECK constraint of ``table`` allows ``column`` (``column IN (...)`` or ``= ANY (ARRAY[...])``)."""
    definitions = [r["definition"] for r in await db.fetch(
        "SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conrelid = $1::regclass "
        "AND contype = 'c'", table)]
    for definition in definitions:
        if re.search(rf"\(\(?{column}\b.*= ANY", definition) and "IS NULL" not in definition.split("ANY")[0]:
            return set(re.findall(r"'([^']*)'::text", definition))
    raise AssertionError(f"no CHECK of {table}.{column} in {definitions}")


@pytest.mark.parametrize(("table", "column", "vocabulary"), [
    ("custom_fields", "subject_type", {s.value for s in SubjectType}),
    ("custom_fields", "value_type", {v.value for v in ValueType}),
    ("custom_fields", "relation_target", {t.value for t in RelationTarget}),
    ("users", "account_role", ACCOUNT_LEVELS),
    ("project_memberships", "permission", PROJECT_LEVELS),
])
async def test_the_database_allows_the_domain_s_vocabulary(db: asyncpg.Connection[Any], table: str, column: str,
                                                          vocabulary: set[str]) -> None:
    assert await _allowed(db, table, column) == vocabulary


async def test_the_access_levels_table_holds_both_ladders(db: asyncpg.Connection[Any]) -> None:
    rows = await db.fetch("SELECT name, scope FROM access_levels")
    assert {r["name"] for r in rows if r["scope"] == "account"} == ACCOUNT_LEVELS
    assert {r["name"] for r in rows if r["scope"] == "project"} == PROJECT_LEVELS


def test_the_wire_schemas_name_the_domain_s_vocabulary() -> None:
    assert set(typing.get_args(kantata_wire.SubjectTypeName)) == {s.value for s in SubjectType}
    assert set(typing.get_args(kantata_wire.ValueTypeName)) == {v.value for v in ValueType}
    assert set(typing.get_args(kantata_wire.AccessLevel)) == ACCOUNT_LEVELS | PROJECT_LEVELS
    assert ACCOUNT_ADMIN in ACCOUNT_LEVELS
