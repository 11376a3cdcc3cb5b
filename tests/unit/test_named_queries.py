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


def test_only_the_store_runs_named_queries() -> None:
    """Handlers, the worker and the relay call the store's keyword-only functions; none of them picks a query by
    name and passes its positional arguments (issue 13: the store owns its SQL)."""
    outside = []
    for path in SERVICE.rglob("*.py"):
        if path.parent.name == "store" or "store" in path.relative_to(SERVICE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "query":
                outside.append(f"{path.relative_to(SERVICE)}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "cfv.store.queries":
                outside.append(f"{path.relative_to(SERVICE)}:{node.lineno} imports cfv.store.queries")
    assert not outside, f"named queries run outside cfv.store (add a function to a store module): {outside}"
