"""The faces declare, beside their routes, their error shape and which routes write values: a route added to a
face's table answers errors in that face's shape and counts against the budget its table declares, with no
change anywhere else (no path patterns in the error renderer or the rate limiter to keep in step)."""

from __future__ import annotations

from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cfv.gateway import faces, keys, plane
from cfv.gateway.app import create_app
from cfv.gateway.auth import Principal
from cfv.gateway.errors import ApiError, error_middleware
from cfv.gateway.kantata import KANTATA
from cfv.gateway.limits import LIMITER, Budget, guard_middleware
from cfv.settings import Settings

# Routes no module of the gateway has, added to the real faces by these tests alone.
PLANE_THINGS = plane.PROJECT + "test-only-things/"
PLANE_THING = PLANE_THINGS + "{thing_id}/values/"
KANTATA_THINGS = "/api/v1/test_only_things"


class _Authenticator:
    async def principal(self, request: web.Request) -> Principal:
        if "X-API-Key" not in request.headers:
            raise ApiError.one(401, "authentication", "send an API key")
        return Principal(key_id=7, user_id=1, workspace_id=1, workspace_slug="acme", account_role="admin")


class _Limiter:
    """Counts what the guard asks for; refuses once ``allowed`` is spent."""

    window = 60.0

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.allowed = 1000

    def auth_failures(self, address: str) -> Budget | None:
        return None

    async def auth_failed(self, address: str) -> Budget | None:
        return None

    async def hit(self, key_id: int, endpoint: str, address: str) -> Budget:
        self.hits.append(endpoint)
        return Budget(10, 5, 30, len(self.hits) <= self.allowed)


async def _refuse(request: web.Request) -> web.Response:
    raise ApiError.one(400, "validation", "must be a thing", "value")


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


_plane_routes = web.RouteTableDef()
_plane_routes.post(PLANE_THINGS)(_refuse)
_plane_routes.get(PLANE_THINGS)(_refuse)
_plane_routes.post(PLANE_THING)(_ok)
_kantata_routes = web.RouteTableDef()
_kantata_routes.post(KANTATA_THINGS)(_refuse)
_kantata_routes.put(KANTATA_THINGS + "/{id}")(_ok)
# A third face, of a shape and URL space of its own.
THIRD = faces.Face("third", lambda status, errors: {"third": [status, *(e["message"] for e in errors)]},
                   prefix="/api/v3/")
_third_routes = web.RouteTableDef()
_third_routes.post("/api/v3/things/{id}")(_refuse)
# Declared as the faces' modules declare theirs (once, at import).
TABLES = (faces.Table(plane.PLANE, _plane_routes, writes=frozenset({PLANE_THING})),
          faces.Table(KANTATA, _kantata_routes, writes=frozenset({KANTATA_THINGS + "/{id}"})),
          faces.Table(THIRD, _third_routes, writes=frozenset({"/api/v3/things/{id}"})))


@pytest.fixture
async def served() -> Any:
    app = web.Application(middlewares=[error_middleware, guard_middleware])
    limiter = _Limiter()
    app[LIMITER] = cast(Any, limiter)
    app[keys.SETTINGS] = Settings()
    app[keys.AUTHENTICATOR] = cast(Any, _Authenticator())
    for table in TABLES:
        faces.mount(app, table)
    async with TestServer(app) as server, aiohttp.ClientSession(headers={"X-API-Key": "k"}) as http:
        yield server, http, limiter


async def _call(served: Any, method: str, path: str, **options: Any) -> tuple[int, Any]:
    server, http, _ = served
    async with http.request(method, server.make_url(path), **options) as answer:
        return answer.status, await answer.json()


PROJECT = "/api/v1/workspaces/acme/projects/8d5e0a3c-6f7b-4c1e-9a2d-3b4c5d6e7f80/"


async def test_a_route_added_to_a_face_answers_errors_in_its_shape(served: Any) -> None:
    assert await _call(served, "POST", PROJECT + "test-only-things/") == (400, {"value": ["must be a thing"]})
    assert await _call(served, "POST", KANTATA_THINGS) == (400, {"errors": [
        {"type": "validation", "message": "must be a thing", "field": "value"}]})
    # The guard's own refusals too: Plane answers 401 and 429 as Django REST framework does.
    server, _, _ = served
    async with aiohttp.ClientSession() as anonymous, \
            anonymous.post(server.make_url(PROJECT + "test-only-things/")) as answer:
        assert (answer.status, await answer.json()) == (401, {"detail": "send an API key"})
    async with aiohttp.ClientSession() as anonymous, anonymous.post(server.make_url(KANTATA_THINGS)) as answer:
        assert answer.status == 401 and (await answer.json())["errors"][0]["type"] == "authentication"


async def test_a_route_added_to_a_face_counts_against_the_budget_its_table_declares(served: Any) -> None:
    limiter = served[2]
    await _call(served, "POST", PROJECT + "test-only-things/")
    await _call(served, "GET", PROJECT + "test-only-things/")
    await _call(served, "POST", PROJECT + "test-only-things/t/values/")
    await _call(served, "POST", KANTATA_THINGS)
    await _call(served, "PUT", KANTATA_THINGS + "/3")
    assert limiter.hits == [faces.DEFINITIONS, faces.READS, faces.WRITES, faces.DEFINITIONS, faces.WRITES]


async def test_a_spent_budget_is_refused_in_the_faces_shape(served: Any) -> None:
    served[2].allowed = 0
    status, body = await _call(served, "POST", PROJECT + "test-only-things/t/values/")
    assert status == 429 and list(body) == ["detail"] and "10 writes requests" in body["detail"], body
    status, body = await _call(served, "PUT", KANTATA_THINGS + "/3")
    assert status == 429 and body["errors"][0]["type"] == "rate_limited", body


async def test_a_new_face_brings_its_shape_its_url_space_and_its_budgets(served: Any) -> None:
    assert await _call(served, "POST", "/api/v3/things/1") == (400, {"third": [400, "must be a thing"]})
    assert await _call(served, "GET", "/api/v3/nothing") == (404, {"third": [404, "Not Found"]})
    assert served[2].hits == [faces.WRITES, faces.READS]
    assert faces.endpoint_class("PATCH", "/api/v3/things/2/") == faces.WRITES  # 405s count as its writes too


async def test_paths_no_route_matched_answer_in_the_shape_of_the_face_that_owns_them(served: Any) -> None:
    status, body = await _call(served, "GET", PROJECT + "nothing-here/")
    assert (status, body) == (404, {"error": "Not Found"})
    status, body = await _call(served, "DELETE", PROJECT + "test-only-things/")  # 405: the route is Plane's
    assert status == 405 and list(body) == ["error"], body
    status, body = await _call(served, "GET", "/api/v1/nothing-here")
    assert status == 404 and body["errors"][0]["type"] == "not_found", body


def test_a_face_refuses_routes_outside_its_url_space_and_stale_value_paths() -> None:
    outside = web.RouteTableDef()
    outside.get("/api/v1/elsewhere")(_ok)
    with pytest.raises(ValueError, match="outside the face's prefix"):
        faces.mount(web.Application(), faces.Table(plane.PLANE, outside))
    with pytest.raises(ValueError, match="value paths without a route"):
        faces.mount(web.Application(), faces.Table(KANTATA, outside, writes=frozenset({"/api/v1/gone"})))


def test_the_gateways_routes_are_declared_by_their_faces() -> None:
    """Every route of both faces is in the app's table (one lookup a request), with its face and budget; the
    value writes of both faces are the only ``writes``."""
    app = create_app(Settings(), cast(Any, None), cast(Any, None), limiter=cast(Any, _Limiter()))
    declared = app[faces.ROUTES]
    by_face: dict[str, set[tuple[str, str]]] = {}
    for route in app.router.routes():
        assert route.resource is not None
        path = route.resource.canonical
        if path.startswith("/api/v1/workspaces/") or path.startswith("/api/v1/custom_field"):
            found = declared[route]  # a KeyError here: a face's route registered around its face
            assert found.face is not None
            by_face.setdefault(found.face.name, set()).add((route.method, path))
            assert (found.budget == faces.WRITES) == (route.method not in faces.READ_METHODS and (
                path.startswith("/api/v1/custom_field_values") or (path.endswith("/values/")
                and "{property_id}" in path))), (route.method, path)
            assert (found.face is plane.PLANE) == path.startswith("/api/v1/workspaces/"), path
        elif path.startswith(("/api/v1/users", "/api/v1/api_keys", "/api/v1/events", "/livez")):
            assert route not in declared or declared[route].face is None, path
    assert ("POST", "/api/v1/custom_field_values") in by_face["kantata"]
    assert ("POST", plane.VALUES) in by_face["plane"]
