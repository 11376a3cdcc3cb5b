"""The docs agree with the code (issue 12): every setting is in docs/operating.md with its default; every route the
gateway serves is named in the API docs, and every route they name is served; the README is a front door that
names the two commands; every relative link leads to a file (and heading) that exists; and the imports keep the
layering rule of docs/architecture.md.

No services are needed: the gateway's application is built, not run.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, cast

from cfv.gateway.app import create_app
from cfv.gateway.limits import RateLimiter
from cfv.settings import Settings
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
DOCS = ROOT / "docs"
OPERATING = DOCS / "operating.md"
ARCHITECTURE = DOCS / "architecture.md"
SERVICE = ROOT / "service" / "cfv"
SCHEMAS = ROOT / "schemas" / "cfv_schemas"

README_LIMIT = 8_500  # bytes: "at most about 8 KB"

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def markdown_files() -> list[Path]:
    """The prose of the repository: README, CONTRIBUTING, the docs and the benchmarks' README."""
    return [README, CONTRIBUTING, *sorted(DOCS.glob("*.md")), ROOT / "bench" / "README.md"]


def without_code_blocks(text: str) -> str:
    """``text`` with its fenced code blocks blanked (their lines kept, so line numbers still count)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


# --- (a) every setting, with its default -----------------------------------------------------------------------


def env_name(field: str) -> str:
    return f"CFV_{field.upper()}"


def test_every_setting_is_in_the_operating_docs() -> None:
    text = OPERATING.read_text()
    missing = [env_name(name) for name in Settings.model_fields if not re.search(rf"\b{env_name(name)}\b", text)]
    assert not missing, f"settings of service/cfv/settings.py missing from docs/operating.md: {missing}"


_SETTING_ROW = re.compile(r"^\| `(CFV_[A-Z0-9_]+)` \| ([^|]*) \|", re.MULTILINE)


def _shown_default(cell: str) -> str:
    """The default a table cell shows: its code span, or nothing for *(empty)*."""
    cell = cell.strip()
    if cell == "*(empty)*":
        return ""
    found = re.fullmatch(r"`([^`]*)`", cell)
    assert found, f"a default is a code span or *(empty)*, not {cell!r}"
    return found.group(1)


def test_the_settings_table_gives_each_setting_its_default() -> None:
    rows = _SETTING_ROW.findall(OPERATING.read_text())
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"settings listed twice: {[n for n, c in Counter(names).items() if c > 1]}"
    fields = {env_name(name): field for name, field in Settings.model_fields.items()}
    assert set(names) == set(fields), (
        f"the table in docs/operating.md and service/cfv/settings.py differ: missing {sorted(set(fields) - set(names))}"
        f", unknown {sorted(set(names) - set(fields))}")
    for name, cell in rows:
        field = fields[name]
        assert field.annotation is not None, name
        shown = TypeAdapter(field.annotation).validate_python(_shown_default(cell))
        assert shown == field.default, \
            f"docs/operating.md gives {name} the default {cell.strip()}, the code {field.default!r}"


# --- (b) every route, both ways --------------------------------------------------------------------------------


def normal(path: str) -> str:
    """A route with its parameters unnamed: the docs may call ``{value_id}`` ``{id}``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def served_routes() -> set[tuple[str, str]]:
    """Every (method, route) the gateway serves (as tests/integration/test_tenant_isolation.py reads them); HEAD
    routes go with their GET."""
    app = create_app(Settings(), cast(Any, None), cast(Any, None), cast(RateLimiter, object()))
    return {(route.method, normal(route.resource.canonical)) for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None}


_ROUTE = re.compile(rf"`((?:{'|'.join(METHODS)})(?:/(?:{'|'.join(METHODS)}))*) (/[^`\s]*)`")


def documented_routes(text: str) -> set[tuple[str, str]]:
    """The routes a page names as code spans like `GET /api/v1/x/{id}` or `GET/PATCH /api/v1/x/{id}?a=`
    (a query, or an optional part in brackets, is not part of the route)."""
    found: set[tuple[str, str]] = set()
    for methods, path in _ROUTE.findall(text):
        path = re.split(r"[?\[]", path, maxsplit=1)[0]
        found.update((method, normal(path)) for method in methods.split("/"))
    return found


def api_docs() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_every_route_is_documented() -> None:
    documented = set().union(*(documented_routes(path.read_text()) for path in api_docs()))
    missing = sorted(served_routes() - documented)
    assert not missing, (
        "routes the gateway serves that no page of docs/ names (write them as `METHOD /full/path/{param}`): "
        f"{missing}")


def test_every_documented_route_is_served() -> None:
    served = served_routes()
    for path in api_docs():
        stale = sorted(documented_routes(path.read_text()) - served)
        assert not stale, f"docs/{path.name} names routes the gateway does not serve: {stale}"


def test_the_route_reader_reads_the_forms_the_docs_use() -> None:
    assert documented_routes("`GET/PATCH /api/v1/x/{id}` and `DELETE /api/v1/y?ids=1,2` and `GET /z[?a=]`") == {
        ("GET", "/api/v1/x/{}"), ("PATCH", "/api/v1/x/{}"), ("DELETE", "/api/v1/y"), ("GET", "/z")}


# --- (c) the README is a front door ----------------------------------------------------------------------------


def test_the_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes (at most {README_LIMIT}): move reference to docs/"
    text = README.read_text()
    for command in ("bin/dev", "bin/test"):
        assert re.search(rf"^{re.escape(command)}\s+#", text, re.MULTILINE), f"the README does not give {command}"


# --- (d) links lead somewhere ----------------------------------------------------------------------------------


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: Counter[str] = Counter()
    found = set()
    for line in without_code_blocks(path.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            found.add(base if not seen[base] else f"{base}-{seen[base]}")
            seen[base] += 1
    return frozenset(found)


def links(path: Path) -> list[str]:
    """The targets of the inline links of a Markdown file, code (blocks and spans) left out."""
    text = re.sub(r"`[^`\n]*`", "code", without_code_blocks(path.read_text()))
    return _LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if _SCHEME.match(target):
            continue
        file, _, fragment = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        if not where.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and where.suffix == ".md" and fragment not in anchors(where):
            broken.append(f"{target} (no such heading in {where.name})")
    return broken


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    for path in markdown_files():
        assert path.is_file(), path
        broken = broken_links(path)
        assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_the_link_checker_sees_a_broken_link() -> None:
    assert links(README), "the README links to the docs"
    assert slug("Commands on the queue (for integrations)") == "commands-on-the-queue-for-integrations"
    assert slug("The API's description") == "the-apis-description"


# --- (e) the layering rule -------------------------------------------------------------------------------------

FOUNDATION, DOMAIN, ADAPTER, SERVICE_LAYER, ENTRY = range(5)

#: Each top-level module or package of cfv, and its layer (docs/architecture.md, "The layering rule").
LAYERS = {
    "cfv": FOUNDATION, "settings": FOUNDATION, "logs": FOUNDATION, "faults": FOUNDATION, "metrics": FOUNDATION,
    "monitor": FOUNDATION, "batching": FOUNDATION, "contracts": FOUNDATION,
    "domain": DOMAIN,
    "store": ADAPTER, "broker": ADAPTER,
    "gateway": SERVICE_LAYER, "worker": SERVICE_LAYER, "relay": SERVICE_LAYER, "event_log": SERVICE_LAYER,
    "transfer": SERVICE_LAYER, "dead_letters": SERVICE_LAYER, "deliverer": SERVICE_LAYER,
    "processes": ENTRY, "cli": ENTRY, "supervisor": ENTRY, "__main__": ENTRY,
}

#: Imports that break the rule, each named in docs/architecture.md: none (the outcome type and the NOTIFY channels
#: moved to cfv.contracts, key making to cfv.domain.credentials). Keep it so.
EXCEPTIONS: set[tuple[str, str]] = set()

#: What the domain may not import: it does no I/O.
IO_LIBRARIES = {"asyncpg", "aiohttp", "aio_pika", "aiormq", "redis", "psycopg", "yoyo", "structlog"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports (anywhere in it, ``TYPE_CHECKING`` blocks and functions included)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from cfv.gateway import admin` imports the module cfv.gateway.admin
            for alias in node.names:
                where = root.parent / Path(*f"{base}.{alias.name}".split("."))
                if where.with_suffix(".py").exists() or (where / "__init__.py").exists():
                    found.add(f"{base}.{alias.name}")
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cfv"


def layering_violations() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in SERVICE.rglob("*.py"):
        importer = module_name(path, SERVICE)
        unit = unit_of(importer)
        for imported in imports_of(path, SERVICE):
            if imported != "cfv" and not imported.startswith("cfv."):
                continue
            other = unit_of(imported)
            if other == unit or imported == "cfv":
                continue
            mine, theirs = LAYERS[unit], LAYERS[other]
            if theirs < mine or (mine == theirs and mine in (FOUNDATION, ENTRY)):
                continue
            found.add((importer, imported))
    return found


def test_every_module_has_a_layer() -> None:
    units = {unit_of(module_name(path, SERVICE)) for path in SERVICE.rglob("*.py")}
    assert units <= set(LAYERS), f"modules without a layer (place them in LAYERS and docs/architecture.md): " \
                                 f"{sorted(units - set(LAYERS))}"


def test_imports_keep_the_layering_rule() -> None:
    violations = layering_violations()
    new = sorted(violations - EXCEPTIONS)
    assert not new, f"imports against the layering rule of docs/architecture.md: {new}"
    gone = sorted(EXCEPTIONS - violations)
    assert not gone, f"exceptions that no longer occur: delete them here and in docs/architecture.md: {gone}"
    text = ARCHITECTURE.read_text()
    unnamed = sorted({module for pair in EXCEPTIONS for module in pair if f"`{module}`" not in text})
    assert not unnamed, f"docs/architecture.md does not name these modules of the exceptions: {unnamed}"


def test_the_domain_and_the_wire_models_do_no_io_and_import_no_service() -> None:
    for root, what in ((SERVICE / "domain", "the domain"), (SCHEMAS, "cfv_schemas")):
        for path in root.rglob("*.py"):
            base = SCHEMAS if root == SCHEMAS else SERVICE
            imported = imports_of(path, base)
            io = sorted(module for module in imported if module.split(".")[0] in IO_LIBRARIES)
            assert not io, f"{what} does I/O: {module_name(path, base)} imports {io}"
            if root == SCHEMAS:
                service = sorted(module for module in imported if module.split(".")[0] == "cfv")
                assert not service, f"cfv_schemas imports the service: {module_name(path, base)} imports {service}"
