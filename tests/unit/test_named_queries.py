"""Every named query in ``store/sql/*.sql`` is used by the service: a query nobody runs is dead SQL that still
has to be kept in step with the schema (issue 13). A name counts as used when the service's code holds it as a
string literal (``query("name")``, or a name chosen at run time from literals)."""

from __future__ import annotations

import ast
from pathlib import Path

from cfv.store.queries import all_names

SERVICE = Path(__file__).resolve().parents[2] / "service" / "cfv"


def _string_literals() -> set[str]:
    found: set[str] = set()
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def test_every_named_query_is_used_by_the_service() -> None:
    unused = sorted(set(all_names()) - _string_literals())
    assert not unused, f"named queries no code runs (delete them, or use them): {unused}"
