"""The faces of the API (Kantata's, Plane's): each declares, beside its routes, the shape of its error answers,
the URL space it alone serves and which of its routes write values (their rate-limit class).

**Why not aiohttp sub-applications.** A face is what a sub-application would be (routes, an error renderer, a
budget per route), but aiohttp's sub-apps do not fit two ways. Kantata's routes share nothing narrower than
``/api/v1`` with the admin API, events and subjects, and a :class:`aiohttp.web.PrefixedSubAppResource` never
falls through: once a path is under its prefix, its own router's 404 is the answer, so a sub-app at ``/api/v1``
would turn the 405 of, say, ``DELETE /api/v1/events`` into a 404 (``MatchedSubAppResource`` rules behave the
same, and are checked before every other resource). And every request routed into a sub-app pays for it: a
second walk of the URL through the sub-app's router and one more middleware layer (aiohttp wraps each app of
the match in ``_fix_request_current_app``), on the value writes of both faces, the gateway's hot path.

So the faces' routes are registered on the one router (resolution costs what it did), and :func:`mount` records
what each route declares in a dict on the application, keyed by aiohttp's route object: the error middleware
and the rate limiter learn a matched request's face and budget from one dict lookup. A face's ``prefix`` is the
URL space it alone serves (every one of its routes must lie under it, :func:`mount` checks), as a sub-app's
prefix would be: a request there that no route matched (404, 405), or that aiohttp could not even parse, is
answered in that face's shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# The rate-limit classes (budgets) of requests: see cfv.gateway.limits.
WRITES = "writes"
READS = "reads"
DEFINITIONS = "definitions"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

ErrorBody = Callable[[int, list[dict[str, Any]]], Any]


def native_error_body(status: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """cfv's own error shape, ``{"errors": [...]}``: Kantata's, and that of every route of no face (the admin
    API, events, subjects, probes) and of any path no face owns."""
    return {"errors": errors}


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """A face of the API: its name, the body of its error answers (from a status and core error objects), and
    the URL space it alone serves (None: it shares ``/api/v1`` and answers unmatched paths in no shape of its
    own)."""

    name: str
    error_body: ErrorBody
    prefix: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Table:
    """A face's route table, declared in the module of its handlers: the face, its routes, and the paths (as
    written in the route decorators) whose non-read methods write values (``writes``; every other route is
    ``reads`` for GET, HEAD, OPTIONS and ``definitions`` for the rest)."""

    face: Face
    routes: web.RouteTableDef
    writes: frozenset[str] = frozenset()
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(_template(path) for path in sorted(self.writes)))
        _TABLES.append(self)

    def writes_path(self, path: str) -> bool:
        """Whether ``path`` (with or without a trailing slash) is one of the value paths of this table."""
        other = path[:-1] if path.endswith("/") else path + "/"
        return any(p.fullmatch(path) or p.fullmatch(other) for p in self._patterns)


@dataclass(frozen=True, slots=True)
class Declared:
    """What a route of the application declares: its face (None: no face) and its budget."""

    face: Face | None
    budget: str


ROUTES: web.AppKey[dict[web.AbstractRoute, Declared]] = web.AppKey("face_routes", dict)
_TABLES: list[Table] = []  # every table declared (in the modules of the faces), for paths no route matched


def budget_of(method: str, writes: bool) -> str:
    """The budget of a request by its method, and by whether its route writes values."""
    if method.upper() in READ_METHODS:
        return READS
    return WRITES if writes else DEFINITIONS


def mount(app: web.Application, table: Table) -> list[web.AbstractRoute]:
    """Add a face's routes to ``app`` and record, for each, the face and budget it declares."""
    paths = {definition.path for definition in table.routes if isinstance(definition, web.RouteDef)}
    if stale := table.writes - paths:
        raise ValueError(f"{table.face.name}: value paths without a route: {sorted(stale)}")
    prefix = table.face.prefix
    if prefix is not None and (outside := sorted(p for p in paths if not p.startswith(prefix))):
        raise ValueError(f"{table.face.name}: routes outside the face's prefix {prefix}: {outside}")
    declared = app.get(ROUTES)
    if declared is None:
        declared = app[ROUTES] = {}
    added = []
    for definition in table.routes:
        if not isinstance(definition, web.RouteDef):
            raise TypeError(f"{table.face.name}: a face's table holds routes only, not {definition!r}")
        for route in definition.register(app.router):
            added.append(route)
            declared[route] = Declared(table.face, budget_of(route.method, definition.path in table.writes))
            for sibling in route.resource or ():  # the HEAD route aiohttp adds beside a GET
                if sibling.method == "HEAD" and sibling.handler is route.handler:
                    declared.setdefault(sibling, Declared(table.face, READS))
    return added


def declared(request: web.Request) -> Declared:
    """What the route that matched ``request`` declares: one dict lookup for a route of a face. A route added
    outside any face (the admin API, probes) is worked out once, from its path; a request no route matched
    (404, 405), each time."""
    route = request.match_info.route
    routes = request.app.get(ROUTES)
    found = routes.get(route) if routes is not None else None
    if found is None:
        found = Declared(face_by_path(request.path), endpoint_class(request.method, request.path))
        if routes is not None and route.resource is not None and len(routes) < 10_000:
            routes[route] = found
    return found


def face_by_path(path: str) -> Face | None:
    """The face whose URL space holds ``path``, if one does (the narrowest; for answers no route of a face
    gave)."""
    found: Face | None = None
    for table in _TABLES:
        prefix = table.face.prefix
        if prefix is not None and path.startswith(prefix) and (found is None or len(prefix) > len(found.prefix or "")):
            found = table.face
    return found


def endpoint_class(method: str, path: str) -> str:
    """The budget of a request by its method and path, for requests no route of a face matched: ``reads`` (GET,
    HEAD, OPTIONS), ``writes`` (any other method on a value path some face declares) or ``definitions``."""
    if method.upper() in READ_METHODS:
        return READS
    return budget_of(method, any(table.writes_path(path) for table in _TABLES))


_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*(?:\{[^{}]*\}[^{}]*)*))?\}")


def _template(path: str) -> re.Pattern[str]:
    """The paths an aiohttp route template (``/things/{id}``, ``/things/{id:\\d+}``) matches."""
    parts, end = [], 0
    for placeholder in _PLACEHOLDER.finditer(path):
        parts.append(re.escape(path[end:placeholder.start()]))
        parts.append(f"(?:{placeholder.group(2)})" if placeholder.group(2) else "[^{}/]+")
        end = placeholder.end()
    parts.append(re.escape(path[end:]))
    return re.compile("".join(parts))
