"""The Plane face: ``/api/v1/workspaces/{slug}/projects/…``: projects, work-item properties, their options and
values.

A property is a custom field of ``WorkItem`` subjects scoped to a project; its values are written through the
same core command as Kantata's (gateway → broker → worker), and validated by the same domain code. Definitions
(projects, properties, options) are written by the gateway directly, as on the Kantata face.
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

from cfv.domain.access import default_access
from cfv.domain.fields import FieldDefinition, SubjectType, ValueType
from cfv.domain.rules import InvalidRules, ValueRules, parse_rules
from cfv.gateway import faces, keys
from cfv.gateway.auth import Principal, require_admin, require_project_admin
from cfv.gateway.choices import delete_choice
from cfv.gateway.defaults import check_default_users, checked_default, draft_definition
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import (
    accepted,
    deletion_answer,
    failure_status,
    read_json,
    submit_field_deletion,
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
from cfv.store.queries import query

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
    row = await _pool(request).fetchrow(query("get_project"), principal.workspace_id,
                                        _uuid(request, "project_id", "project"))
    if row is None:
        raise not_found("project")
    return principal, row


async def _property(request: web.Request) -> tuple[Principal, Row]:
    principal = _caller(request)
    row = await _pool(request).fetchrow(query("get_property"), principal.workspace_id,
                                        _uuid(request, "project_id", "project"),
                                        _uuid(request, "property_id", "property"))
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
    row = await _pool(request).fetchrow(query("insert_project"), principal.workspace_id, spec.id, spec.name,
                                        spec.identifier, spec.description)
    if row is None:
        raise ApiError.one(409, "conflict", "a project with this id or identifier already exists", "identifier")
    return json_response(render_project(row), 201)


@routes.get(PREFIX)
async def list_projects(request: web.Request) -> web.Response:
    """The workspace's projects."""
    principal = _caller(request)
    rows = await _pool(request).fetch(query("list_projects"), principal.workspace_id)
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
    try:
        updated = await _pool(request).fetchrow(query("update_project"), principal.workspace_id, row["id"],
                                                changes.name, changes.identifier, changes.description)
    except asyncpg.UniqueViolationError:
        raise ApiError.one(409, "conflict", "another project has this identifier", "identifier") from None
    if updated is None:
        raise not_found("project")
    return json_response(render_project(updated))


@routes.delete(PROJECT)
async def delete_project(request: web.Request) -> web.Response:
    """Delete a project, its properties and all their values (each announced as deleted), through the workers:
    204 once done (202 if it takes longer)."""
    principal, row = await _project(request)
    require_admin(principal)
    respond_async = wants_async(request)
    submitted = await request.app[keys.SUBMITTER].delete_project(
        principal, row["id"], idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request), wait=not respond_async)
    return deletion_answer(submitted, respond_async=respond_async)


# --- properties ---------------------------------------------------------------------------------------


def _rules(value_type: ValueType, is_multi: bool, raw: Any) -> ValueRules:
    try:
        return parse_rules(value_type, is_multi, raw)
    except InvalidRules as error:
        raise ApiError(400, [{"type": "validation", "message": f"{rule}: {problem}", "field": "validation_rules"}
                             for rule, problem in error.problems.items()]) from None


def _default(definition: FieldDefinition, raw: Any) -> Any:
    return checked_default(definition, raw,
                           choices_hint="an OPTION property's default is the option marked is_default")


@routes.post(PROPERTIES)
async def create_property(request: web.Request) -> web.Response:
    """Define a property of the project's work items; its rules and default are checked now."""
    principal, project = await _project(request)
    await require_project_admin(_pool(request), principal, str(project["id"]))
    spec = await read_json(request, PropertyIn)
    value_type, relation_target, relation_multi = core_type(spec.property_type, spec.relation_type, spec.is_multi)
    rules = _rules(value_type, spec.is_multi, spec.validation_rules)
    definition = draft_definition(principal.workspace_id, spec.display_name, SubjectType.WORK_ITEM, value_type,
                                  relation_target, relation_multi, spec.is_required, rules)
    default = _default(definition, spec.default_value)
    async with _pool(request).acquire() as connection:
        await check_default_users(connection, definition, default)
    write_access, read_access = default_access(SubjectType.WORK_ITEM)
    row = await _pool(request).fetchrow(
        query("insert_property"), principal.workspace_id, project["id"], spec.display_name, spec.description,
        value_type.value, relation_target, relation_multi, write_access, read_access, spec.is_required, default,
        spec.is_active, spec.settings, rules.as_json(), spec.external_id, spec.external_source)
    assert row is not None
    return json_response(render_property(row), 201)


@routes.get(PROPERTIES)
async def list_properties(request: web.Request) -> web.Response:
    """The project's properties."""
    principal, project = await _project(request)
    rows = await _pool(request).fetch(query("list_properties"), principal.workspace_id, project["id"])
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
    property_type, relation_type, is_multi = plane_type(row["value_type"], row["relation_target"],
                                                        row["relation_multi"])
    for name, current in (("property_type", property_type), ("relation_type", relation_type),
                          ("is_multi", is_multi)):
        sent = getattr(changes, name)
        if name in changes.model_fields_set and sent != current:
            raise _invalid(name, f"a property's type cannot change (it is {current}); create another property")
    value_type = ValueType(row["value_type"])
    rules_raw = changes.validation_rules if changes.validation_rules is not None else row["validation_rules"]
    rules = _rules(value_type, is_multi, rules_raw)
    required = changes.is_required if changes.is_required is not None else row["is_required"]
    definition = draft_definition(principal.workspace_id, changes.display_name or row["name"],
                                  SubjectType.WORK_ITEM, value_type, row["relation_target"], row["relation_multi"],
                                  required, rules)
    new_default = "default_value" in changes.model_fields_set
    # The default must still fit when only the rules change.
    default = _default(definition, changes.default_value if new_default else row["default_value"])
    if new_default:
        async with _pool(request).acquire() as connection:
            await check_default_users(connection, definition, default)
    updated = await _pool(request).fetchrow(
        query("update_property"), row["id"], changes.display_name, changes.description, changes.is_required,
        changes.is_active, changes.settings, rules.as_json() if changes.validation_rules is not None else None,
        default, new_default, changes.external_id, changes.external_source)
    if updated is None:
        raise not_found("property")
    return json_response(render_property(updated))


@routes.delete(PROPERTY)
async def delete_property(request: web.Request) -> web.Response:
    """Delete a property and all its values (each announced as deleted)."""
    principal, row = await _property(request)
    await require_project_admin(_pool(request), principal, str(row["project_id"]))
    return await submit_field_deletion(request, row["id"])


# --- options ------------------------------------------------------------------------------------------


async def _option_property(request: web.Request) -> Row:
    _, row = await _property(request)
    if row["value_type"] not in (ValueType.SINGLE, ValueType.MULTI):
        raise _invalid("property_id", "only OPTION properties have options")
    return row


async def _option(request: web.Request) -> tuple[Row, Row]:
    prop = await _option_property(request)
    row = await _pool(request).fetchrow(query("get_option"), prop["id"], _uuid(request, "option_id", "option"))
    if row is None:
        raise not_found("option")
    return prop, row


@routes.post(OPTIONS)
async def create_option(request: web.Request) -> web.Response:
    """Add an option to an OPTION property."""
    prop = await _option_property(request)
    await require_project_admin(_pool(request), request[keys.PRINCIPAL], str(prop["project_id"]))
    spec = await read_json(request, OptionIn)
    async with _pool(request).acquire() as connection, connection.transaction():
        row = await connection.fetchrow(query("insert_option"), prop["id"], spec.name, spec.description,
                                        spec.is_default, spec.is_active, spec.external_id, spec.external_source)
        assert row is not None
        if spec.is_default and prop["value_type"] == ValueType.SINGLE:
            await connection.execute(query("clear_other_defaults"), prop["id"], row["id"])
    return json_response(render_option(row, prop["uuid"]), 201)


@routes.get(OPTIONS)
async def list_options(request: web.Request) -> web.Response:
    """A property's options, in order."""
    _, prop = await _property(request)
    rows = await _pool(request).fetch(query("list_options"), prop["id"])
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
    await require_project_admin(_pool(request), request[keys.PRINCIPAL], str(prop["project_id"]))
    changes = await read_json(request, OptionPatch)
    async with _pool(request).acquire() as connection, connection.transaction():
        updated = await connection.fetchrow(query("update_option"), row["id"], changes.name, changes.description,
                                            changes.is_default, changes.is_active, changes.external_id,
                                            changes.external_source)
        if updated is None:
            raise not_found("option")
        if changes.is_default and prop["value_type"] == ValueType.SINGLE:
            await connection.execute(query("clear_other_defaults"), prop["id"], row["id"])
    return json_response(render_option(updated, prop["uuid"]))


@routes.delete(OPTION)
async def delete_option(request: web.Request) -> web.Response:
    """Delete an option no value holds (409 otherwise: deactivate it instead)."""
    prop, row = await _option(request)
    await require_project_admin(_pool(request), request[keys.PRINCIPAL], str(prop["project_id"]))
    await delete_choice(_pool(request), prop["workspace_id"], prop["id"], row["id"])
    return web.Response(status=204)


# --- values -------------------------------------------------------------------------------------------


async def _option_uuids(pool: asyncpg.Pool[Any], properties: list[Row]) -> dict[int, str]:
    ids = [p["id"] for p in properties if p["value_type"] in (ValueType.SINGLE, ValueType.MULTI)]
    if not ids:
        return {}
    return {r["id"]: str(r["uuid"]) for r in await pool.fetch(query("option_uuids"), ids)}


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
    rows = await pool.fetch(query("work_item_values"), principal.workspace_id, work_item, prop["id"],
                            prop["project_id"], principal.user_id, principal.account_role)
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
    properties = {r["id"]: r for r in await pool.fetch(query("list_properties"), principal.workspace_id,
                                                         project["id"])}
    rows = await pool.fetch(query("work_item_values"), principal.workspace_id, work_item, None, project["id"],
                            principal.user_id, principal.account_role)
    option_uuids = await _option_uuids(pool, list(properties.values()))
    out: list[dict[str, Any]] = []
    for row in rows:
        rendered = render_values(properties[row["custom_field_id"]], work_item,
                                 {**row, "set_at": row["set_at"].isoformat()}, option_uuids)
        out.extend(rendered if isinstance(rendered, list) else [rendered])
    return json_response(out)
