"""Named SQL queries, read from the ``sql/*.sql`` files beside this module.

A file holds queries separated by ``-- name: <name>`` lines. Hand-written (a dozen lines) rather than
aiosql, because callers need asyncpg's own ``fetch``/``executemany``/prepared-statement calls on the hot path,
which a wrapper would hide.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_SQL_DIR = Path(__file__).with_name("sql")
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def query(name: str) -> str:
    """Return the text of the query called ``name``; a missing name is a KeyError at first use."""
    return _all_queries()[name]


@cache
def _all_queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(_SQL_DIR.glob("*.sql")):
        parts = _NAME.split(path.read_text())
        for name, text in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ValueError(f"query {name} is defined twice ({path.name})")
            found[name] = text.strip()
    return found


def all_names() -> list[str]:
    """Every query name, for a test that prepares each one against the real schema."""
    return sorted(_all_queries())
