"""Layers point one way (issue 13): domain ← store/broker ← worker/relay/gateway ← processes/cli. Read from the
source (every ``import`` of a ``cfv`` module), so a new import that breaks the rule fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "service" / "cfv"

#: Modules any layer may use: settings, the shared contracts, faults, metrics, logging, small utilities.
NEUTRAL = {"settings", "contracts", "faults", "metrics", "logs", "batching", "monitor"}
#: What each layer may import, besides itself and the neutral modules.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "store": {"domain"},
    "broker": {"domain"},
    "worker": {"domain", "store", "broker"},
    "relay": {"domain", "store", "broker"},
    "gateway": {"domain", "store", "broker"},
    "event_log": {"domain", "store", "broker"},
    "dead_letters": {"domain", "store", "broker"},
    "transfer": {"domain", "store", "broker"},
    "processes": {"domain", "store", "broker", "worker", "relay", "gateway"},
    "supervisor": set(),
    "cli": {"domain", "store", "broker", "worker", "relay", "gateway", "processes", "supervisor", "event_log",
            "dead_letters", "transfer"},
    "__main__": {"cli"},
}


def _layer(module: str) -> str:
    """``cfv.gateway.auth`` → ``gateway``; ``cfv.relay`` → ``relay``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> list[tuple[str, str, int]]:
    """(importing module's layer, imported cfv module, line) for every import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        layer = relative.parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and (node.module == "cfv"
                                                                     or node.module.startswith("cfv.")):
                targets = [f"cfv.{a.name}" for a in node.names] if node.module == "cfv" else [node.module]
                found += [(layer, target, node.lineno) for target in targets]
            elif isinstance(node, ast.Import):
                found += [(layer, a.name, node.lineno) for a in node.names if a.name.startswith("cfv.")]
    return found


def test_every_layer_is_known() -> None:
    layers = {path.relative_to(PACKAGE).parts[0].removesuffix(".py") for path in PACKAGE.glob("*")
              if path.name != "__init__.py" and (path.suffix == ".py" or path.is_dir())
              and path.name not in ("migrations", "__pycache__")}
    assert layers - NEUTRAL - {"__init__"} == set(ALLOWED), "add the new module to ALLOWED or NEUTRAL"


def test_layers_point_one_way() -> None:
    broken = [f"{layer} imports {target} (line {line})" for layer, target, line in _imports()
              if (imported := _layer(target)) != layer and imported not in NEUTRAL
              and imported not in ALLOWED[layer]]
    assert broken == [], "\n".join(broken)


def test_neutral_modules_import_nothing_of_the_layers() -> None:
    broken = [f"{layer} imports {target}" for layer, target, _ in _imports()
              if layer in NEUTRAL and _layer(target) not in NEUTRAL]
    assert broken == [], broken


@pytest.mark.parametrize(("face", "other"), [("kantata", "plane"), ("plane", "kantata")])
def test_neither_face_imports_the_other(face: str, other: str) -> None:
    modules = [p for p in (PACKAGE / "gateway").glob(f"{face}*.py")]
    assert modules
    offending = [f"{p.name}: {target}" for p in modules for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module
                 and (target := node.module).startswith(f"cfv.gateway.{other}")]
    assert offending == [], offending
