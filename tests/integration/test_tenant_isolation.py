"""Tenant isolation on every endpoint: another workspace's key never reaches, changes or learns of an object.

For each route of the gateway that names an object (in its path, query or body), a key of ``other_workspace`` (an
account administrator of its own workspace, so no 403 can hide anything) asks for an object of ``workspace``: the
answer must be 404, the same answer (ids aside) as for an id that names nothing, so existence cannot be probed;
nothing of the first tenant may change or appear in any answer. Listings with the other key never hold the first
tenant's objects. On the Plane face, the first tenant's slug is not found, and the first tenant's ids under the
other's slug are not found either.

The route table is read from the application itself: a route added without a cross-tenant case here (or an
explicit exemption with its reason) fails :func:`test_every_route_has_a_cross_tenant_case`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import orjson
from cfv.gateway.app import create_app
from cfv.gateway.limits import RateLimiter
from cfv.gateway.plane import OPTION, OPTIONS, PROJECT, PROPERTIES, PROPERTY, VALUES, WORK_ITEM_VALUES
from cfv.gateway.plane import PREFIX as PLANE
from cfv.settings import Settings
from support import Stack, Workspace, running_stack
from support.plane import Plane, new_project

API = "/api/v1"
UNKNOWN_INT = "987654"
NO_SUCH_SLUG = "no-such-workspace"


# --- the first tenant's objects -----------------------------------------------------------------------------


@dataclass
class Seeded:
    """Objects of the first tenant, and unknown ids of the same kinds."""

    slug: str
    marker: str  # in the name of every object: must never appear in an answer to the other tenant
    field_id: str
    choice_field_id: str
    choice_id: str
    set_id: str
    value_id: str
    operation_id: str
    user_id: str
    user_email: str
    key_id: str
    key_prefix: str
    user_key: str
    project_id: str
    property_id: str
    option_id: str
    work_item: str
    unknown_uuids: dict[str, str] = field(default_factory=lambda: {
        name: str(uuid.uuid4()) for name in ("operation", "project", "property", "option", "work_item")})
    webhook_id: str = ""
    delivery_id: str = ""

    def ids(self) -> list[str]:
        """Every id of the tenant's objects (and its slug): none may appear in an answer to the other tenant."""
        return [self.field_id, self.choice_field_id, self.choice_id, self.set_id, self.value_id, self.operation_id,
                self.user_id, self.key_id, self.project_id, self.property_id, self.option_id]


async def seed(stack: Stack, workspace: Workspace) -> Seeded:
    """Give ``workspace`` one object of every kind, each named with a marker."""
    marker = f"tenant-secret-{uuid.uuid4().hex[:12]}"

    async def call(method: str, path: str, json: Any = None, expect: int = 200) -> Any:
        status, body, _ = await stack.request(method, path, workspace, json=json)
        assert status == expect, (method, path, status, body)
        return body

    def only(body: Any, key: str) -> dict[str, Any]:
        [found] = body[key].values()
        return dict(found)

    points = await stack.create_field(workspace, name=f"{marker} points", subject_type="Story", value_type="number")
    colour = await stack.create_field(workspace, name=f"{marker} colour", subject_type="Story", value_type="single",
                                      choices=[f"{marker} red", f"{marker} blue"])
    choice = colour["choices"][0]
    field_set = only(await call("POST", f"{API}/custom_field_sets", {"custom_field_set": {
        "name": f"{marker} set", "subject_type": "Story", "custom_field_ids": [points["id"], colour["id"]]}},
        201), "custom_field_sets")
    value = only(await call("POST", f"{API}/custom_field_values", {"custom_field_value": {
        "subject_type": "Story", "subject_id": 7, "custom_field_id": int(points["id"]), "value": 13,
        "external_reference": {"external_id": marker, "external_source": "jira"}}}), "custom_field_values")
    await call("POST", f"{API}/custom_field_values", {"custom_field_value": {
        "subject_type": "Story", "subject_id": 7, "custom_field_id": int(colour["id"]), "value": int(choice["id"])}})
    user = only(await call("POST", f"{API}/users", {"user": {
        "name": f"{marker} user", "email": f"user-{uuid.uuid4().hex}@example.com",
        "account_role": "account_collaboration"}}, 201),
        "users")
    key = only(await call("POST", f"{API}/users/{user['id']}/api_keys", {"api_key": {"name": f"{marker} key"}},
                          201), "api_keys")
    await call("PUT", f"{API}/users/{user['id']}/memberships/100", {"permission": "project_admin"}, 201)
    await call("PUT", f"{API}/subject_projects", {"subject_projects": [
        {"subject_type": "Story", "subject_id": 42, "project": "100"}]})

    plane = await new_project(stack, workspace, "SECRET")
    await call("PATCH", plane.project, {"name": f"{marker} project"})
    prop = await plane.create_property(property_type="OPTION", display_name=f"{marker} property")
    option = await plane.create_option(prop, f"{marker} option")
    work_item = str(uuid.uuid4())
    status, body, _ = await plane.write(prop, option["id"], work_item=work_item)
    assert status == 201, body
    webhook = only(await call("POST", f"{API}/webhooks", {"webhook": {
        "url": f"https://93.184.216.34/{marker}", "event_types": ["cfv.value.created.v1"],
        "description": f"{marker} webhook"}}, 201), "webhooks")
    db = await asyncpg.connect(stack.settings.database_url)
    try:  # an attempt to list and retry (no delivery process runs here)
        delivery_id = await db.fetchval(
            "INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, status, attempt, "
            "response_status) VALUES ($1, 1, $2, 'cfv.value.created.v1', 'succeeded', 1, 200) RETURNING id",
            int(webhook["id"]), uuid.uuid4())
    finally:
        await db.close()
    return Seeded(workspace.slug, marker, points["id"], colour["id"], choice["id"], field_set["id"], value["id"],
                  value["operation_id"], user["id"], user["email"], key["id"], key["prefix"], key["key"],
                  plane.project_id, prop["id"], option["id"], work_item, webhook_id=webhook["id"],
                  delivery_id=str(delivery_id))


async def snapshot(stack: Stack, workspace: Workspace, s: Seeded) -> dict[str, Any]:
    """What the first tenant sees of its objects (to check that nothing changed)."""
    paths = [
        f"{API}/custom_fields/{s.field_id}", f"{API}/custom_fields/{s.choice_field_id}",
        f"{API}/custom_field_choices/{s.choice_id}", f"{API}/custom_field_sets/{s.set_id}",
        f"{API}/custom_field_values/{s.value_id}", f"{API}/operations/{s.operation_id}",
        f"{API}/custom_field_values/history?subject_type=Story&subject_id=7&custom_field_id={s.field_id}",
        f"{API}/users/{s.user_id}", f"{API}/users/{s.user_id}/memberships", f"{API}/api_keys/{s.key_id}",
        f"{API}/users", f"{API}/api_keys", f"{API}/custom_fields", f"{API}/custom_field_sets",
        f"{API}/custom_field_choices", f"{API}/webhooks/{s.webhook_id}", f"{API}/webhooks/{s.webhook_id}/deliveries",
        PLANE.format(slug=s.slug), PROJECT.format(slug=s.slug, project_id=s.project_id),
        PROPERTIES.format(slug=s.slug, project_id=s.project_id),
        OPTIONS.format(slug=s.slug, project_id=s.project_id, property_id=s.property_id),
        WORK_ITEM_VALUES.format(slug=s.slug, project_id=s.project_id, work_item_id=s.work_item),
    ]
    seen = {}
    for path in paths:
        status, body, _ = await stack.request("GET", path, workspace)
        assert status == 200, (path, body)
        seen[path] = body
    return seen


# --- probes -------------------------------------------------------------------------------------------------


@dataclass
class Probe:
    """One request of the other tenant naming the first tenant's objects, and the same request naming nothing.

    ``unknown`` None: there is no "nothing" to compare with (a listing, or a creation); then ``expect`` is the
    status the request must get. Otherwise the two answers must be equal (ids aside) and have status ``expect``
    (None: whatever the unknown ids get, if it is not a success).
    """

    path: str
    unknown: str | None
    json: Any = None
    expect: int | None = 404
    allowed: tuple[str, ...] = ()  # what of the first tenant this answer may show (what the request itself sent)


Probes = Callable[[Seeded, Workspace], list[Probe]]


def _same(path: str, s: Seeded, **unknown: str) -> tuple[str, str]:
    """``path`` (a template) for the first tenant's ids, and for unknown ones (the names given in ``unknown``)."""
    real = {"value_id": s.value_id, "field_id": s.field_id, "choice_id": s.choice_id, "set_id": s.set_id,
            "operation_id": s.operation_id, "user_id": s.user_id, "key_id": s.key_id, "project": "100",
            "webhook_id": s.webhook_id, "delivery_id": s.delivery_id}
    return path.format(**real), path.format(**{**real, **unknown})


def _ids(template: str, unknown_name: str, unknown_value: str) -> Probes:
    """Probes of a Kantata/admin path naming one object by id (GET also as HEAD)."""
    def probes(s: Seeded, other: Workspace) -> list[Probe]:
        real, unknown = _same(template, s, **{unknown_name: unknown_value})
        return [Probe(real, unknown)]
    return probes


def _with_body(template: str, unknown_name: str, unknown_value: str, json: Any) -> Probes:
    def probes(s: Seeded, other: Workspace) -> list[Probe]:
        real, unknown = _same(template, s, **{unknown_name: unknown_value})
        return [Probe(real, unknown, json)]
    return probes


def _plane(template: str, json: Callable[[Seeded], Any] | None = None) -> Probes:
    """Probes of a Plane path: the first tenant's slug (vs. a slug that names no workspace), and the first
    tenant's ids under the other's slug (vs. unknown ids)."""
    def probes(s: Seeded, other: Workspace) -> list[Probe]:
        real = {"project_id": s.project_id, "property_id": s.property_id, "option_id": s.option_id,
                "work_item_id": s.work_item}
        unknown = {"project_id": s.unknown_uuids["project"], "property_id": s.unknown_uuids["property"],
                   "option_id": s.unknown_uuids["option"], "work_item_id": s.unknown_uuids["work_item"]}
        body = json(s) if json else None
        return [Probe(template.format(slug=s.slug, **real), template.format(slug=NO_SUCH_SLUG, **real), body),
                Probe(template.format(slug=other.slug, **real), template.format(slug=other.slug, **unknown), body)]
    return probes


def _fixed(*make: Callable[[Seeded, Workspace], Probe]) -> Probes:
    def probes(s: Seeded, other: Workspace) -> list[Probe]:
        return [m(s, other) for m in make]
    return probes


VALUE = f"{API}/custom_field_values/{{value_id}}"
FIELD = f"{API}/custom_fields/{{field_id}}"
CHOICE = f"{API}/custom_field_choices/{{choice_id}}"
SET = f"{API}/custom_field_sets/{{set_id}}"
USER = f"{API}/users/{{user_id}}"
KEY = f"{API}/api_keys/{{key_id}}"
WEBHOOK = f"{API}/webhooks/{{webhook_id}}"
RETRY = f"{WEBHOOK}/deliveries/{{delivery_id}}/retry"

#: (method, route) -> the probes of the other tenant on it. GET probes are sent as HEAD too.
PROBES: dict[tuple[str, str], Probes] = {
    # The event log: the first tenant's field named as a filter finds nothing, as an unknown id does.
    ("GET", f"{API}/events"): _fixed(lambda s, o: Probe(
        f"{API}/events?custom_field_id={s.field_id}&limit=1000", f"{API}/events?custom_field_id={UNKNOWN_INT}"
                                                                 "&limit=1000", expect=200)),
    # Values: by id in the path, in the body, in the query.
    ("GET", VALUE): _ids(VALUE, "value_id", UNKNOWN_INT),
    ("PUT", VALUE): _with_body(VALUE, "value_id", UNKNOWN_INT, {"custom_field_value": {"value": 99}}),
    ("DELETE", VALUE): _ids(VALUE, "value_id", UNKNOWN_INT),
    ("PUT", f"{API}/custom_field_values"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_values", f"{API}/custom_field_values",
        {"custom_field_values": [{"id": s.value_id, "value": 99}]})),
    ("DELETE", f"{API}/custom_field_values"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_values?ids={s.value_id}", f"{API}/custom_field_values?ids={UNKNOWN_INT}")),
    ("POST", f"{API}/custom_field_values"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_values", None, {"custom_field_value": {
            "subject_type": "Story", "subject_id": 7, "custom_field_id": int(s.field_id), "value": 99}}),
        lambda s, o: Probe(f"{API}/custom_field_values", None, {"custom_field_values": [
            {"subject_type": "Story", "subject_id": 8, "custom_field_id": int(s.choice_field_id),
             "value": int(s.choice_id)}]})),
    ("GET", f"{API}/custom_field_values"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_values?subject_type=Story&with_custom_field_id={s.field_id}&include=custom_field,selected_choices",
        f"{API}/custom_field_values?subject_type=Story&with_custom_field_id={UNKNOWN_INT}"
        "&include=custom_field,selected_choices",
        expect=200), lambda s, o: Probe(f"{API}/custom_field_values?subject_type=Story&with_subject_id=7", None,
                                        expect=200)),
    ("GET", f"{API}/custom_field_values/history"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_values/history?subject_type=Story&subject_id=7&custom_field_id={s.field_id}",
        f"{API}/custom_field_values/history?subject_type=Story&subject_id=7&custom_field_id={UNKNOWN_INT}")),
    # Operations.
    ("GET", f"{API}/operations/{{operation_id}}"): lambda s, o: [Probe(
        f"{API}/operations/{s.operation_id}", f"{API}/operations/{s.unknown_uuids['operation']}")],
    # Fields, choices, sets.
    ("GET", FIELD): _ids(FIELD, "field_id", UNKNOWN_INT),
    ("PATCH", FIELD): _with_body(FIELD, "field_id", UNKNOWN_INT, {"custom_field": {"name": "hijacked"}}),
    ("DELETE", FIELD): _ids(FIELD, "field_id", UNKNOWN_INT),
    ("GET", f"{API}/custom_field_choices"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_choices?custom_field_id={s.choice_field_id}",
        f"{API}/custom_field_choices?custom_field_id={UNKNOWN_INT}", expect=200)),
    ("POST", f"{API}/custom_field_choices"): _fixed(
        lambda s, o: Probe(f"{API}/custom_field_choices", f"{API}/custom_field_choices",
                           {"custom_field_choice": {"custom_field_id": int(s.choice_field_id), "label": "hijacked"}}),
    ),
    ("GET", CHOICE): _ids(CHOICE, "choice_id", UNKNOWN_INT),
    ("PATCH", CHOICE): _with_body(CHOICE, "choice_id", UNKNOWN_INT, {"custom_field_choice": {"label": "hijacked"}}),
    ("DELETE", CHOICE): _ids(CHOICE, "choice_id", UNKNOWN_INT),
    ("POST", f"{API}/custom_field_sets"): _fixed(lambda s, o: Probe(
        f"{API}/custom_field_sets", f"{API}/custom_field_sets",
        {"custom_field_set": {"name": "hijacked", "subject_type": "Story", "custom_field_ids": [int(s.field_id)]}},
        expect=None)),
    ("GET", SET): _ids(SET, "set_id", UNKNOWN_INT),
    ("PATCH", SET): _with_body(SET, "set_id", UNKNOWN_INT, {"custom_field_set": {"name": "hijacked"}}),
    ("DELETE", SET): _ids(SET, "set_id", UNKNOWN_INT),
    # Users, memberships, keys (account administration).
    ("POST", f"{API}/users"): _fixed(lambda s, o: Probe(
        # Email addresses are unique per workspace: another tenant's address is free here (a 409 would reveal it).
        f"{API}/users", None, {"user": {"name": "Namesake", "email": s.user_email,
                                        "account_role": "account_collaboration"}}, expect=201,
        allowed=(s.user_email,))),
    ("GET", USER): _ids(USER, "user_id", UNKNOWN_INT),
    ("PATCH", USER): _with_body(USER, "user_id", UNKNOWN_INT, {"user": {"name": "hijacked",
                                                                        "account_role": "account_admin"}}),
    ("DELETE", USER): _ids(USER, "user_id", UNKNOWN_INT),
    ("GET", f"{USER}/memberships"): _ids(f"{USER}/memberships", "user_id", UNKNOWN_INT),
    ("PUT", f"{USER}/memberships/{{project}}"): _with_body(f"{USER}/memberships/{{project}}", "user_id",
                                                          UNKNOWN_INT, {"permission": "project_admin"}),
    ("DELETE", f"{USER}/memberships/{{project}}"): _ids(f"{USER}/memberships/{{project}}",
                                                        "user_id", UNKNOWN_INT),
    ("POST", f"{USER}/api_keys"): _with_body(f"{USER}/api_keys", "user_id", UNKNOWN_INT, {"name": "hijacked"}),
    ("GET", f"{API}/api_keys"): _fixed(lambda s, o: Probe(
        f"{API}/api_keys?user_id={s.user_id}", f"{API}/api_keys?user_id={UNKNOWN_INT}")),
    ("GET", KEY): _ids(KEY, "key_id", UNKNOWN_INT),
    ("PATCH", KEY): _with_body(KEY, "key_id", UNKNOWN_INT, {"expires_at": "2000-01-01T00:00:00Z"}),
    ("DELETE", KEY): _ids(KEY, "key_id", UNKNOWN_INT),
    # Webhooks: by id in the path; a new one's filters may name any field id (they match nothing of the caller's).
    ("POST", f"{API}/webhooks"): _fixed(lambda s, o: Probe(f"{API}/webhooks", None, {"webhook": {
        "url": "https://93.184.216.34/mine", "event_types": ["cfv.value.created.v1"],
        "custom_field_ids": [int(s.field_id)]}}, expect=201)),
    ("GET", WEBHOOK): _ids(WEBHOOK, "webhook_id", UNKNOWN_INT),
    ("PATCH", WEBHOOK): _with_body(WEBHOOK, "webhook_id", UNKNOWN_INT, {"webhook": {"description": "hijacked",
                                                                                    "rotate_secret": True}}),
    ("DELETE", WEBHOOK): _ids(WEBHOOK, "webhook_id", UNKNOWN_INT),
    ("GET", f"{WEBHOOK}/deliveries"): _ids(f"{WEBHOOK}/deliveries", "webhook_id", UNKNOWN_INT),
    ("POST", RETRY): _ids(RETRY, "webhook_id", UNKNOWN_INT),
    # Subjects' projects: the other tenant places the same Story in its own project; the first's placement stays.
    ("PUT", f"{API}/subject_projects"): _fixed(lambda s, o: Probe(
        f"{API}/subject_projects", None,
        {"subject_projects": [{"subject_type": "Story", "subject_id": 42, "project": "200"}]}, expect=200)),
    # Plane: projects, properties, options, values.
    ("POST", PLANE): lambda s, o: [Probe(PLANE.format(slug=s.slug), PLANE.format(slug=NO_SUCH_SLUG),
                                         {"name": "hijacked", "identifier": "HIJACK"})],
    ("GET", PLANE): lambda s, o: [Probe(PLANE.format(slug=s.slug), PLANE.format(slug=NO_SUCH_SLUG))],
    ("GET", PROJECT): _plane(PROJECT),
    ("PATCH", PROJECT): _plane(PROJECT, lambda s: {"name": "hijacked"}),
    ("DELETE", PROJECT): _plane(PROJECT),
    ("POST", PROPERTIES): _plane(PROPERTIES, lambda s: {"display_name": "hijacked", "property_type": "TEXT"}),
    ("GET", PROPERTIES): _plane(PROPERTIES),
    ("GET", PROPERTY): _plane(PROPERTY),
    ("PATCH", PROPERTY): _plane(PROPERTY, lambda s: {"display_name": "hijacked"}),
    ("DELETE", PROPERTY): _plane(PROPERTY),
    ("POST", OPTIONS): _plane(OPTIONS, lambda s: {"name": "hijacked"}),
    ("GET", OPTIONS): _plane(OPTIONS),
    ("GET", OPTION): _plane(OPTION),
    ("PATCH", OPTION): _plane(OPTION, lambda s: {"name": "hijacked"}),
    ("DELETE", OPTION): _plane(OPTION),
    ("POST", VALUES): _plane(VALUES, lambda s: {"value": s.option_id}),
    ("PATCH", VALUES): _plane(VALUES, lambda s: {"value": s.option_id}),
    ("DELETE", VALUES): _plane(VALUES),
    ("GET", VALUES): _plane(VALUES),
    ("GET", WORK_ITEM_VALUES): _plane(WORK_ITEM_VALUES),
}

#: Listings with no object in their path: the other tenant's answer must hold none of the first's objects.
LISTINGS = {
    ("GET", f"{API}/custom_fields"): f"{API}/custom_fields?per_page=200",
    ("GET", f"{API}/custom_field_sets"): f"{API}/custom_field_sets?per_page=200",
    ("GET", f"{API}/users"): f"{API}/users?per_page=200",
    ("GET", f"{API}/webhooks"): f"{API}/webhooks?per_page=200",
}
# Routes also listed without filters (besides their probes above).
EXTRA_LISTINGS = [f"{API}/custom_field_choices?per_page=200", f"{API}/api_keys?per_page=200",
                  f"{API}/events?limit=1000",
                  f"{API}/custom_field_values?subject_type=Story&per_page=200&include=custom_field,selected_choices,setter,subject",
                  f"{API}/custom_field_values?subject_type=WorkItem&per_page=200"]

#: Routes that name no object of anyone, with the reason they need no cross-tenant case.
EXEMPT = {
    ("GET", "/healthz"): "unauthenticated liveness answer; names and returns nothing of any workspace",
    ("GET", "/livez"): "unauthenticated liveness answer; names and returns nothing of any workspace",
    ("GET", "/readyz"): "unauthenticated readiness answer: the state of the dependencies, nothing of any workspace",
    ("POST", f"{API}/custom_fields"): "creates a field in the caller's workspace from a body naming no existing "
                                      "object (its choices are new labels)",
    ("GET", f"{API}/openapi.json"): "the API's description: the same for everyone, nothing of any workspace",
    ("GET", "/docs"): "the docs page: static, nothing of any workspace",
    ("GET", "/docs/static/docs.js"): "the docs page's script: static",
    ("GET", "/docs/static"): "the docs page's assets (Swagger UI's files): static",
}


def routes_of_the_app() -> set[tuple[str, str]]:
    """Every (method, route) the gateway serves; HEAD routes go with their GET."""
    app = create_app(Settings(), cast(Any, None), cast(Any, None), cast(RateLimiter, object()))
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None}


def test_every_route_has_a_cross_tenant_case() -> None:
    served = routes_of_the_app()
    covered = set(PROBES) | set(LISTINGS) | set(EXEMPT)
    assert not set(PROBES) & set(EXEMPT)
    missing = sorted(served - covered)
    assert not missing, f"routes without a cross-tenant case in {__name__} (add one to PROBES, or to EXEMPT " \
                        f"with the reason): {missing}"
    stale = sorted(covered - served)
    assert not stale, f"cases of routes the gateway no longer serves: {stale}"


# --- the checks ---------------------------------------------------------------------------------------------


def _normal(body: Any, names: list[str]) -> str:
    """An answer as text, with each of ``names`` (ids, slugs) replaced by a placeholder (and without the time a
    listing was read at)."""
    if isinstance(body, dict) and isinstance(body.get("meta"), dict):
        body = {**body, "meta": {k: v for k, v in body["meta"].items() if k != "as_of"}}
    text = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", "<id>", text)
    return text


def _leaks(text: str, s: Seeded) -> list[str]:
    """What of the first tenant shows in ``text``."""
    found = [what for what in (s.marker, s.user_email, s.key_prefix, s.user_key) if what in text]
    return found + [f"id {i}" for i in s.ids() if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text)
                    and len(i) > 8]  # short integer ids may appear as counts or positions


async def _run(stack: Stack, other: Workspace, method: str, probe: Probe, s: Seeded, problems: list[str]) -> None:
    names = [s.slug, NO_SUCH_SLUG, UNKNOWN_INT, *s.unknown_uuids.values(), s.field_id, s.choice_field_id,
             s.choice_id, s.set_id, s.value_id, s.operation_id, s.user_id, s.key_id, s.project_id, s.property_id,
             s.option_id, s.work_item, s.webhook_id, s.delivery_id]
    methods = [method, "HEAD"] if method == "GET" else [method]
    for verb in methods:
        status, body, _ = await stack.request(verb, probe.path, other, json=probe.json)
        text = orjson.dumps(body).decode()
        where = f"{verb} {probe.path}"
        if leaked := [what for what in _leaks(text, s) if what not in probe.allowed]:
            problems.append(f"{where}: the answer shows the other tenant's {leaked}: {status} {text[:300]}")
        if probe.unknown is None:
            if status != probe.expect:
                problems.append(f"{where}: {status} (expected {probe.expect}) {text[:300]}")
            continue
        unknown_status, unknown_body, _ = await stack.request(verb, probe.unknown, other, json=probe.json)
        expect = probe.expect if probe.expect is not None else unknown_status
        if status != expect or (probe.expect is None and 200 <= status < 300):
            problems.append(f"{where}: {status} (expected {expect}) {text[:300]}")
        elif (status, _normal(body, names)) != (unknown_status, _normal(unknown_body, names)):
            problems.append(f"{where}: {status} {text[:300]} differs from the answer for ids that name nothing "
                            f"({verb} {probe.unknown}): {unknown_status} {orjson.dumps(unknown_body).decode()[:300]}")


_ORDER = {"GET": 0, "PUT": 1, "PATCH": 2, "POST": 3, "DELETE": 4}


async def test_another_tenant_reaches_no_object_of_the_first_on_any_route(
        settings: Settings, workspace: Workspace, other_workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    async with running_stack(settings) as stack:
        s = await seed(stack, workspace)
        # The other tenant has objects of its own too (so that its answers are not trivially empty).
        await stack.create_field(other_workspace, name="Own points", subject_type="Story", value_type="number")
        await new_project(stack, other_workspace, "OWN")
        before = await snapshot(stack, workspace, s)
        keys_before = await db.fetchval("SELECT count(*) FROM api_keys WHERE workspace_id = $1", workspace.id)

        problems: list[str] = []
        # Listings first: later probes make objects of the other tenant (a namesake user) that may show.
        for path in [*LISTINGS.values(), *EXTRA_LISTINGS]:
            status, body, _ = await stack.request("GET", path, other_workspace)
            text = orjson.dumps(body).decode()
            if status != 200:
                problems.append(f"GET {path}: {status} {text[:300]}")
            if leaked := _leaks(text, s):
                problems.append(f"GET {path}: the listing shows the other tenant's {leaked}: {text[:300]}")
        for method, route in sorted(PROBES, key=lambda r: (_ORDER[r[0]], r[1])):
            for probe in PROBES[(method, route)](s, other_workspace):
                await _run(stack, other_workspace, method, probe, s, problems)
        assert not problems, "\n".join(problems)

        # Nothing of the first tenant changed, and its user's key still works.
        assert await snapshot(stack, workspace, s) == before
        assert await db.fetchval("SELECT count(*) FROM api_keys WHERE workspace_id = $1", workspace.id) == keys_before
        status, body, _ = await stack.request("GET", f"{API}/custom_fields", Workspace(workspace.id, workspace.slug,
                                                                                       s.user_key))
        assert status == 200, body
        placed = await db.fetch("SELECT workspace_id, subject_id, project FROM subject_projects ORDER BY 1")
        assert [tuple(r) for r in placed] == [(workspace.id, "42", "100"), (other_workspace.id, "42", "200")]
        assert await db.fetchval("SELECT count(*) FROM value_versions WHERE workspace_id = $1",
                                 other_workspace.id) == 0
        # The other tenant's namesake user exists in its own workspace only.
        emails = await db.fetch("SELECT workspace_id FROM users WHERE email = $1 ORDER BY 1", s.user_email)
        assert [r["workspace_id"] for r in emails] == [workspace.id, other_workspace.id]


async def test_a_project_id_reused_by_another_tenant_shows_none_of_the_first_tenants_properties(
        settings: Settings, workspace: Workspace, other_workspace: Workspace) -> None:
    """Plane projects are keyed per workspace, so another tenant may create a project with the same (client
    chosen) id: it is a different project, with none of the first one's properties, options or values."""
    async with running_stack(settings) as stack:
        s = await seed(stack, workspace)
        status, body, _ = await stack.request("POST", PLANE.format(slug=other_workspace.slug), other_workspace,
                                              json={"id": s.project_id, "name": "Twin", "identifier": "SECRET"})
        assert status == 201, body
        assert body["id"] == s.project_id
        twin = Plane(stack, other_workspace, s.project_id)
        for path in (twin.project + "work-item-properties/", twin.all_values_path(s.work_item)):
            status, body, _ = await twin.request("GET", path)
            assert status == 200 and body == [], (path, body)
        for path in (twin.property_path(s.property_id), twin.property_path(s.property_id) + "options/",
                     f"{twin.property_path(s.property_id)}options/{s.option_id}/",
                     twin.values_path(s.work_item, s.property_id)):
            status, body, _ = await twin.request("GET", path)
            assert status == 404, (path, body)
        status, body, _ = await twin.request("POST", twin.values_path(s.work_item, s.property_id),
                                             {"value": s.option_id})
        assert status == 404, body
        # The twin's own property is its own.
        prop = await twin.create_property(property_type="TEXT", display_name="Twin text")
        status, body, _ = await twin.write(prop, "hello", work_item=s.work_item)
        assert status == 201, body
        status, mine, _ = await twin.request("GET", twin.all_values_path(s.work_item))
        assert status == 200 and [v["value"] for v in mine] == ["hello"], mine
        # The first tenant's project is as it was.
        first = Plane(stack, workspace, s.project_id)
        status, values, _ = await first.request("GET", first.all_values_path(s.work_item))
        assert status == 200 and [v["value"] for v in values] == [s.option_id], values
        status, props, _ = await first.request("GET", first.project + "work-item-properties/")
        assert [p["id"] for p in props] == [s.property_id], props
