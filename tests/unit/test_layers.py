"""Neither face imports the other (issue 13): the Kantata and Plane faces only translate to and from one core.
(The layering rule itself, domain <- store/broker <- worker/relay/gateway <- processes/cli, is checked on every
import by tests/test_docs.py, against docs/architecture.md.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "service" / "cfv"


@pytest.mark.parametrize(("face", "other"), [("kantata", "plane"), ("plane", "kantata")])
def test_neither_face_imports_the_other(face: str, other: str) -> None:
    modules = list((PACKAGE / "gateway").glob(f"{face}*.py"))
    assert modules
    offending = [f"{p.name}: {target}" for p in modules for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module
                 and (target := node.module).startswith(f"cfv.gateway.{other}")]
    assert offending == [], offending
