"""Rate-limit classes of the gateway's routes, and the JSON limits of request bodies (pure functions)."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from aiohttp import web
from cfv.gateway.app import create_app
from cfv.gateway.bodies import JsonLimitExceeded, check_json_limits
from cfv.gateway.limits import DEFINITIONS, READS, WRITES, Budget, endpoint_class, namespace
from cfv.settings import Settings

KANTATA_VALUES = "/api/v1/custom_field_values"
PLANE_VALUES = ("/api/v1/workspaces/{slug}/projects/{project_id}/work-items/{work_item_id}/work-item-properties/"
                "{property_id}/values/")

# Every route that writes values (both faces): the rest of the non-GET routes are definitions.
VALUE_WRITES = {
    ("POST", KANTATA_VALUES), ("PUT", KANTATA_VALUES), ("DELETE", KANTATA_VALUES),
    ("PUT", KANTATA_VALUES + "/{value_id}"), ("DELETE", KANTATA_VALUES + "/{value_id}"),
    ("POST", PLANE_VALUES), ("PATCH", PLANE_VALUES), ("DELETE", PLANE_VALUES),
}

# Sample values for path placeholders: ids, UUIDs and a slug that is itself a word of the value paths.
SAMPLES = {"slug": "values", "value_id": "12"}
UUID = "8d5e0a3c-6f7b-4c1e-9a2d-3b4c5d6e7f80"


@pytest.fixture(scope="module")
def routes() -> list[tuple[str, str]]:
    """(method, canonical path) of every route of the gateway, as create_app assembles it."""
    app = create_app(Settings(), cast(Any, None), cast(Any, None))
    found = []
    for route in app.router.routes():
        assert isinstance(route, web.AbstractRoute)
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/api/"):
            found.append((route.method, canonical))
    assert found
    return found


def concrete(canonical: str) -> str:
    """A request path matching ``canonical``."""
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), UUID if "id" in m.group(1) else "x"), canonical)


def test_every_route_has_the_class_its_method_and_path_say(routes: list[tuple[str, str]]) -> None:
    for method, canonical in routes:
        if method in ("GET", "HEAD"):
            expected = READS
        elif (method, canonical) in VALUE_WRITES:
            expected = WRITES
        else:
            expected = DEFINITIONS
        assert endpoint_class(method, concrete(canonical)) == expected, (method, canonical)


def test_the_value_write_table_is_current(routes: list[tuple[str, str]]) -> None:
    """Every value-writing route named here exists (a renamed route would leave its writes unclassified)."""
    assert set(VALUE_WRITES) <= set(routes), set(VALUE_WRITES) - set(routes)


def test_definitions_of_both_faces(routes: list[tuple[str, str]]) -> None:
    defined = {(m, c) for m, c in routes if endpoint_class(m, concrete(c)) == DEFINITIONS}
    for method, path in (("POST", "/api/v1/custom_fields"), ("PATCH", "/api/v1/custom_fields/{field_id}"),
                         ("DELETE", "/api/v1/custom_fields/{field_id}"), ("POST", "/api/v1/custom_field_choices"),
                         ("POST", "/api/v1/custom_field_sets"), ("POST", "/api/v1/workspaces/{slug}/projects/"),
                         ("POST", "/api/v1/workspaces/{slug}/projects/{project_id}/work-item-properties/"),
                         ("DELETE", "/api/v1/workspaces/{slug}/projects/{project_id}/work-item-properties/"
                                    "{property_id}/options/{option_id}/")):
        assert (method, path) in defined, (method, path)


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("get", KANTATA_VALUES, READS),
    ("HEAD", KANTATA_VALUES + "/1", READS),
    ("OPTIONS", KANTATA_VALUES, READS),
    ("GET", "/api/v1/custom_field_values/history", READS),
    ("GET", "/api/v1/operations/" + UUID, READS),
    ("GET", "/api/v1/nowhere", READS),
    ("post", KANTATA_VALUES, WRITES),
    ("PATCH", KANTATA_VALUES + "/1", WRITES),
    ("DELETE", KANTATA_VALUES + "/", WRITES),
    ("POST", "/api/v1/custom_field_valuesX", DEFINITIONS),
    ("POST", "/api/v1/custom_fields", DEFINITIONS),
    ("POST", "/api/v1/nowhere", DEFINITIONS),
    ("POST", "/api/v1/admin/keys", DEFINITIONS),
    # A workspace or project named like a value path is not one.
    ("POST", "/api/v1/workspaces/values/projects/", DEFINITIONS),
    ("PATCH", "/api/v1/workspaces/custom_field_values/projects/p/", DEFINITIONS),
    ("POST", f"/api/v1/workspaces/a/projects/{UUID}/work-item-properties/values/", DEFINITIONS),
    ("POST", f"/api/v1/workspaces/a/projects/{UUID}/work-item-properties/{UUID}/options/", DEFINITIONS),
    ("POST", f"/api/v1/workspaces/a/projects/p/work-items/w/work-item-properties/{UUID}/values/", WRITES),
    ("DELETE", f"/api/v1/workspaces/a/projects/p/work-items/w/work-item-properties/{UUID}/values", WRITES),
    ("GET", f"/api/v1/workspaces/a/projects/p/work-items/w/work-item-properties/{UUID}/values/", READS),
])
def test_endpoint_class(method: str, path: str, expected: str) -> None:
    assert endpoint_class(method, path) == expected


def test_budget_headers() -> None:
    assert Budget(10, 3, 42, True).headers() == {"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "3",
                                                  "X-RateLimit-Reset": "42"}


def test_counters_are_namespaced_by_database_unless_told() -> None:
    assert namespace(Settings(database_url="postgresql://u:secret@db:5432/cfv_prod")) == "cfv:cfv_prod"
    assert namespace(Settings(database_url="postgresql://db/other", rate_limit_prefix="p1")) == "p1"
    assert "secret" not in namespace(Settings(database_url="postgresql://u:secret@db/x"))


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` lists around ``leaf``, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def limit_error(data: Any, max_depth: int = 32, max_string: int = 100) -> JsonLimitExceeded:
    with pytest.raises(JsonLimitExceeded) as caught:
        check_json_limits(data, max_depth, max_string)
    return caught.value


@pytest.mark.parametrize("data", [None, 1, 1.5, True, "", "x" * 100, [], {}, {"a": None}, [[], {}, [1, "x"]]])
def test_within_the_limits(data: Any) -> None:
    check_json_limits(data, 2, 100)


def test_depth_counts_containers() -> None:
    check_json_limits(nested(3), 3, 10)
    check_json_limits({"a": {"b": [1]}}, 3, 10)
    error = limit_error({"a": {"b": [[1]]}}, max_depth=3)
    assert "32" not in error.message and "3 levels" in error.message and "CFV_MAX_JSON_DEPTH" in error.message
    assert error.field == "a.b.0"
    assert limit_error(nested(2), max_depth=1).field == "0"
    assert limit_error([], max_depth=0).field is None


def test_depth_beyond_any_stack() -> None:
    assert limit_error(nested(200_000), max_depth=32).message.startswith("the body nests")
    check_json_limits(nested(5_000), 5_000, 1)  # iterative: no RecursionError either way


def test_strings_at_and_over_the_limit() -> None:
    check_json_limits({"value": "é" * 100}, 32, 100)  # characters, not bytes
    error = limit_error({"custom_field_values": [{"value": "ok"}, {"value": "é" * 101}]})
    assert error.field == "custom_field_values.1.value"
    assert "101 characters" in error.message and "100" in error.message
    assert "CFV_MAX_STRING_LENGTH" in error.message
    assert "é" not in error.message  # the string itself is not echoed


def test_object_keys_count_as_strings() -> None:
    error = limit_error({"a": {"k" * 101: 1}})
    assert error.field == "a" and "key" in error.message


def test_numbers_and_literals_have_no_length() -> None:
    check_json_limits([10**300, 1e308, False, None], 32, 1)
