"""The Plane face: ``/api/v1/workspaces/{slug}/projects/…``: projects, work-item properties, their options and
values.

A property is a custom field of ``WorkItem`` subjects scoped to a project; its values are written through the
same core command as Kantata's (gateway → broker → worker), and validated by the same domain code. Definitions
(projects, properties, options) go through the definition core (:mod:`cfv.gateway.definitions`), as on the
Kantata face: this module only translates.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.commands import CommandItem
from cfv_schemas.plane import (
    OptionIn,
    OptionPatch,
    ProjectIn,
    ProjectPatch,
    PropertyIn,
    PropertyPatch,
    ValueIn,
)

from cfv.domain.fields import SubjectType, ValueType
from cfv.gateway import definitions, faces, keys
from cfv.gateway.auth import Principal, require_admin, require_project_admin
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import (
    accepted,
    deletion_answer,
    failure_status,
    read_json,
    wants_async,
)
from cfv.gateway.observe import request_id_of
from cfv.gateway.plane_wire import (
    core_type,
    error_body,
    plane_type,
    render_option,
    render_project,
    render_property,
    render_values,
)
from cfv.store import plane as store_plane

PREFIX = "/api/v1/workspaces/{slug}/projects/"
PROJECT = PREFIX + "{project_id}/"
PROPERTIES = PROJECT + "work-item-properties/"
PROPERTY = PROPERTIES + "{property_id}/"
OPTIONS = PROPERTY + "options/"
OPTION = OPTIONS + "{option_id}/"
WORK_ITEM_VALUES = PROJECT + "work-items/{work_item_id}/work-item-properties/values/"
VALUES = PROJECT + "work-items/{work_item_id}/work-item-properties/{property_id}/values/"

routes = web.RouteTableDef()
# Plane's face: its error shape (plane_wire.error_body), the URL space it alone serves (a path under it that no
# route matches is answered in Plane's shape too), and its value routes, whose writes count as value writes.
PLANE = faces.Face("plane", error_body, prefix="/api/v1/workspaces/")
table = faces.Table(PLANE, routes, writes=frozenset({VALUES}))
Row = Mapping[str, Any]


def _by(request: web.Request) -> definitions.By:
    """Who changes definitions with this request."""
    return definitions.By.of(request[keys.PRINCIPAL], request_id_of(request))


def _caller(request: web.Request) -> Principal:
    """The caller, if the path names its workspace; another workspace is not found, whatever it holds."""
    principal = request[keys.PRINCIPAL]
    if request.match_info["slug"] != principal.workspace_slug:
        raise not_found("workspace")
    return principal


def _uuid(request: web.Request, name: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise not_found(what) from None


def _pool(request: web.Request) -> asyncpg.Pool[Any]:
    return request.app[keys.POOL]


async def _project(request: web.Request) -> tuple[Principal, Row]:
    principal = _caller(request)
    row = await store_plane.get_project(_pool(request), workspace_id=principal.workspace_id,
                                        project_id=_uuid(request, "project_id", "project"))
    if row is None:
        raise not_found("project")
    return principal, row


async def _property(request: web.Request) -> tuple[Principal, Row]:
    principal = _caller(request)
    row = await store_plane.get_property(_pool(request), workspace_id=principal.workspace_id,
                                         project_id=_uuid(request, "project_id", "project"),
                                         property_id=_uuid(request, "property_id", "property"))
    if row is None:
        raise not_found("property")  # or its project
    return principal, row


def _invalid(field: str, message: str) -> ApiError:
    return ApiError.one(400, "validation", message, field)


# --- projects -----------------------------------------------------------------------------------------


@routes.post(PREFIX)
async def create_project(request: web.Request) -> web.Response:
    """Create a project (with a client-chosen id, if given)."""
    principal = _caller(request)
    require_admin(principal)
    spec = await read_json(request, ProjectIn)
    row = await definitions.define_project(_pool(request), _by(request),
                                           spec=definitions.ProjectSpec(name=spec.name, identifier=spec.identifier,
                                                                        description=spec.description, id=spec.id))
    return json_response(render_project(row), 201)


@routes.get(PREFIX)
async def list_projects(request: web.Request) -> web.Response:
    """The workspace's projects."""
    principal = _caller(request)
    rows = await store_plane.list_projects(_pool(request), workspace_id=principal.workspace_id)
    projects = [render_project(r) for r in rows]
    return json_response({"count": len(projects), "total_results": len(projects), "results": projects})


@routes.get(PROJECT)
async def get_project(request: web.Request) -> web.Response:
    """One project."""
    _, row = await _project(request)
    return json_response(render_project(row))


@routes.patch(PROJECT)
async def update_project(request: web.Request) -> web.Response:
    """Rename a project, change its identifier or description."""
    principal, row = await _project(request)
    await require_project_admin(_pool(request), principal, str(row["id"]))
    changes = await read_json(request, ProjectPatch)
    updated = await definitions.change_project(
        _pool(request), _by(request), project_id=row["id"],
        changes=definitions.ProjectChanges(name=changes.name, identifier=changes.identifier,
                                           description=changes.description))
    return json_response(render_project(updated))


@routes.delete(PROJECT)
async def delete_project(request: web.Request) -> web.Response:
    """Delete a project, its properties and all their values (each announced as deleted), through the workers:
    204 once done (202 if it takes longer)."""
    principal, row = await _project(request)
    require_admin(principal)
    respond_async = wants_async(request)
    submitted = await definitions.delete_project(
        request.app[keys.SUBMITTER], principal, row["id"], idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request), wait=not respond_async)
    return deletion_answer(submitted, respond_async=respond_async)


# --- properties ---------------------------------------------------------------------------------------

#: What an OPTION property has instead of a default value, in this face's words.
_DEFAULT_HINT = "an OPTION property's default is the option marked is_default"


@routes.post(PROPERTIES)
async def create_property(request: web.Request) -> web.Response:
    """Define a property of the project's work items; its rules and default are checked now."""
    principal, project = await _project(request)
    await require_project_admin(_pool(request), principal, str(project["id"]))
    spec = await read_json(request, PropertyIn)
    value_type, relation_target, relation_multi = core_type(spec.property_type, spec.relation_type, spec.is_multi)
    row = await definitions.define_field(
        _pool(request), _by(request), default_hint=_DEFAULT_HINT,
        spec=definitions.FieldSpec(
            name=spec.display_name, subject_type=SubjectType.WORK_ITEM, value_type=value_type,
            relation_target=relation_target, relation_multi=relation_multi, description=spec.description,
            required=spec.is_required, default_value=spec.default_value, external_id=spec.external_id,
            external_source=spec.external_source, project_id=project["id"], active=spec.is_active,
            settings=spec.settings, validation_rules=spec.validation_rules))
    return json_response(render_property(row), 201)


@routes.get(PROPERTIES)
async def list_properties(request: web.Request) -> web.Response:
    """The project's properties."""
    principal, project = await _project(request)
    rows = await store_plane.list_properties(_pool(request), workspace_id=principal.workspace_id,
                                             project_id=project["id"])
    return json_response([render_property(r) for r in rows])


@routes.get(PROPERTY)
async def get_property(request: web.Request) -> web.Response:
    """One property."""
    _, row = await _property(request)
    return json_response(render_property(row))


@routes.patch(PROPERTY)
async def update_property(request: web.Request) -> web.Response:
    """Change a property's name, description, flags, settings, rules or default; its type is fixed."""
    principal, row = await _property(request)
    await require_project_admin(_pool(request), principal, str(row["project_id"]))
    changes = await read_json(request, PropertyPatch)
    current = plane_type(row["value_type"], row["relation_target"], row["relation_multi"])
    for name, now in zip(("property_type", "relation_type", "is_multi"), current, strict=True):
        if name in changes.model_fields_set and getattr(changes, name) != now:
            raise _invalid(name, f"a property's type cannot change (it is {now}); create another property")
    updated = await definitions.change_field(
        _pool(request), _by(request), field_id=row["id"], default_hint=_DEFAULT_HINT,
        changes=definitions.FieldChanges(
            name=changes.display_name, description=changes.description, required=changes.is_required,
            set_default="default_value" in changes.model_fields_set, default_value=changes.default_value,
            external_id=changes.external_id, external_source=changes.external_source, active=changes.is_active,
            settings=changes.settings, validation_rules=changes.validation_rules))
    return json_response(render_property(updated))


@routes.delete(PROPERTY)
async def delete_property(request: web.Request) -> web.Response:
    """Delete a property and all its values (each announced as deleted)."""
    principal, row = await _property(request)
    await require_project_admin(_pool(request), principal, str(row["project_id"]))
    respond_async = wants_async(request)
    submitted = await definitions.delete_field(
        request.app[keys.SUBMITTER], principal, row["id"], idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request), wait=not respond_async)
    return deletion_answer(submitted, respond_async=respond_async)


# --- options ------------------------------------------------------------------------------------------


async def _option_property(request: web.Request) -> Row:
    _, row = await _property(request)
    if row["value_type"] not in (ValueType.SINGLE, ValueType.MULTI):
        raise _invalid("property_id", "only OPTION properties have options")
    return row


async def _option(request: web.Request) -> tuple[Row, Row]:
    prop = await _option_property(request)
    row = await store_plane.get_option(_pool(request), field_id=prop["id"],
                                       option_id=_uuid(request, "option_id", "option"))
    if row is None:
        raise not_found("option")
    return prop, row


@routes.post(OPTIONS)
async def create_option(request: web.Request) -> web.Response:
    """Add an option to an OPTION property."""
    prop = await _option_property(request)
    principal = request[keys.PRINCIPAL]
    await require_project_admin(_pool(request), principal, str(prop["project_id"]))
    spec = await read_json(request, OptionIn)
    row = await definitions.define_choice(
        _pool(request), _by(request), field=prop, field_what="property",
        spec=definitions.ChoiceSpec(label=spec.name, description=spec.description, is_default=spec.is_default,
                                    active=spec.is_active, external_id=spec.external_id,
                                    external_source=spec.external_source))
    return json_response(render_option(row, prop["uuid"]), 201)


@routes.get(OPTIONS)
async def list_options(request: web.Request) -> web.Response:
    """A property's options, in order."""
    _, prop = await _property(request)
    rows = await store_plane.list_options(_pool(request), field_id=prop["id"])
    return json_response([render_option(r, prop["uuid"]) for r in rows])


@routes.get(OPTION)
async def get_option(request: web.Request) -> web.Response:
    """One option."""
    prop, row = await _option(request)
    return json_response(render_option(row, prop["uuid"]))


@routes.patch(OPTION)
async def update_option(request: web.Request) -> web.Response:
    """Rename an option, make it the default, or (de)activate it: inactive options cannot be chosen."""
    prop, row = await _option(request)
    principal = request[keys.PRINCIPAL]
    await require_project_admin(_pool(request), principal, str(prop["project_id"]))
    changes = await read_json(request, OptionPatch)
    updated = await definitions.change_choice(
        _pool(request), _by(request), field=prop, choice_id=row["id"], what="option",
        changes=definitions.ChoiceChanges(label=changes.name, description=changes.description,
                                          is_default=changes.is_default, active=changes.is_active,
                                          external_id=changes.external_id, external_source=changes.external_source))
    return json_response(render_option(updated, prop["uuid"]))


@routes.delete(OPTION)
async def delete_option(request: web.Request) -> web.Response:
    """Delete an option no value holds (409 otherwise: deactivate it instead)."""
    prop, row = await _option(request)
    await require_project_admin(_pool(request), request[keys.PRINCIPAL], str(prop["project_id"]))
    await definitions.delete_choice(_pool(request), _by(request), field_id=prop["id"],
                                    choice_id=row["id"])
    return web.Response(status=204)


# --- values -------------------------------------------------------------------------------------------


async def _option_uuids(pool: asyncpg.Pool[Any], properties: list[Row]) -> dict[int, str]:
    ids = [p["id"] for p in properties if p["value_type"] in (ValueType.SINGLE, ValueType.MULTI)]
    if not ids:
        return {}
    return await store_plane.option_uuids(pool, field_ids=ids)


async def _submit_value(request: web.Request, *, op: str, must_exist: bool = False) -> web.Response:
    principal, prop = await _property(request)
    work_item = str(_uuid(request, "work_item_id", "work item"))
    fields: dict[str, Any] = {}
    if op == "write":
        body = await read_json(request, ValueIn)
        if prop["value_type"] in (ValueType.SINGLE, ValueType.MULTI) and not _named_by_uuid(body.value or ""):
            # The core also takes choices' integer ids (Kantata's names); on this face options are UUIDs.
            raise _invalid("value", "options are named by their UUIDs")
        fields = {"value": body.value, "must_exist": must_exist, "external_id": body.external_id,
                  "external_source": body.external_source}
    item = CommandItem(subject_type=SubjectType.WORK_ITEM.value, subject_id=work_item,
                       custom_field_id=prop["id"], op=op, **fields)
    respond_async = wants_async(request)
    submitted = await request.app[keys.SUBMITTER].submit(
        principal, [item], idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request), wait=not respond_async)
    if submitted.outcome is None:
        return accepted(submitted, respond_async=respond_async)
    outcome = submitted.outcome
    if outcome["status"] == "failed":
        raise ApiError(failure_status(outcome, invalid=400, conflict=409), outcome["errors"])
    if op == "delete":
        return web.Response(status=204)
    value = outcome["values"][0]
    stored = {**value, "set_at": value["created_at"]}
    body_out = render_values(prop, work_item, stored, await _option_uuids(_pool(request), [prop]))
    return json_response(body_out, 201 if value["change"] == "created" else 200)


def _named_by_uuid(value: Any) -> bool:
    return all(isinstance(item, str) for item in value) if isinstance(value, list) else isinstance(value, str)


@routes.post(VALUES)
async def write_value(request: web.Request) -> web.Response:
    """Set the value (multi: the whole list), replacing any: 201 if created, 200 if it replaced one."""
    return await _submit_value(request, op="write")


@routes.patch(VALUES)
async def update_value(request: web.Request) -> web.Response:
    """Replace the existing value; 404 if there is none."""
    return await _submit_value(request, op="write", must_exist=True)


@routes.delete(VALUES)
async def delete_value(request: web.Request) -> web.Response:
    """Remove the value: 204, or 404 if there is none (or 400 if the property is required)."""
    return await _submit_value(request, op="delete")


@routes.get(VALUES)
async def get_value(request: web.Request) -> web.Response:
    """The value of one property of a work item (404 if none), or the list of values of a multi property."""
    principal, prop = await _property(request)
    work_item = str(_uuid(request, "work_item_id", "work item"))
    pool = _pool(request)
    rows = await store_plane.work_item_values(pool, workspace_id=principal.workspace_id, work_item=work_item,
                                              field_id=prop["id"], project_id=prop["project_id"],
                                              user_id=principal.user_id, account_role=principal.account_role)
    _, _, is_multi = plane_type(prop["value_type"], prop["relation_target"], prop["relation_multi"])
    if not rows:
        if is_multi:
            return json_response([])
        raise not_found("value")
    stored = {**rows[0], "set_at": rows[0]["set_at"].isoformat()}
    return json_response(render_values(prop, work_item, stored, await _option_uuids(pool, [prop])))


@routes.get(WORK_ITEM_VALUES)
async def list_work_item_values(request: web.Request) -> web.Response:
    """Every value of a work item in the project: one value object per value (per item, for multi ones)."""
    principal, project = await _project(request)
    work_item = str(_uuid(request, "work_item_id", "work item"))
    pool = _pool(request)
    properties = {r["id"]: r for r in await store_plane.list_properties(pool, workspace_id=principal.workspace_id,
                                                                        project_id=project["id"])}
    rows = await store_plane.work_item_values(pool, workspace_id=principal.workspace_id, work_item=work_item,
                                              field_id=None, project_id=project["id"], user_id=principal.user_id,
                                              account_role=principal.account_role)
    option_uuids = await _option_uuids(pool, list(properties.values()))
    out: list[dict[str, Any]] = []
    for row in rows:
        rendered = render_values(properties[row["custom_field_id"]], work_item,
                                 {**row, "set_at": row["set_at"].isoformat()}, option_uuids)
        out.extend(rendered if isinstance(rendered, list) else [rendered])
    return json_response(out)
