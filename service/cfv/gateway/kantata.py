"""The Kantata OX face: ``/api/v1/custom_fields``, ``/api/v1/custom_field_values``, ``/api/v1/operations``.

Answers follow Kantata's format: ``count``, ``meta``, ``results: [{key, id}]`` and the objects under their
key, indexed by id (ids are strings).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.commands import CommandItem
from cfv_schemas.kantata import CustomFieldCreate, CustomFieldUpdate, WriteValuesIn

from cfv.contracts import Outcome
from cfv.domain.fields import SubjectType, ValueType
from cfv.domain.values import render_subject_id
from cfv.gateway import definitions, faces, keys
from cfv.gateway.auth import Principal, require_admin
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import accepted, deletion_answer, failure_status, read_json, wants_async
from cfv.gateway.observe import request_id_of
from cfv.store import fields as store_fields
from cfv.store import operations as stored_operations
from cfv.store import values as stored_values
from cfv.store.values import Reader

routes = web.RouteTableDef()
# Kantata's face: cfv's own error shape, {"errors": [...]}; it shares /api/v1 with the admin API, so it owns no
# prefix. Its routes here: POST /api/v1/custom_field_values writes values (the rest are definitions or reads).
KANTATA = faces.Face("kantata", faces.native_error_body)
table = faces.Table(KANTATA, routes, writes=frozenset({"/api/v1/custom_field_values"}))
VALUES = "custom_field_values"
FIELDS = "custom_fields"


def _by(request: web.Request) -> definitions.By:
    """Who changes definitions with this request."""
    return definitions.By.of(request[keys.PRINCIPAL], request_id_of(request))


def listing(key: str, objects: list[dict[str, Any]], *, total: int | None = None, page: int = 1,
            per_page: int | None = None) -> dict[str, Any]:
    """A Kantata answer holding ``objects`` under ``key``."""
    count = len(objects) if total is None else total
    size = per_page or max(len(objects), 1)
    return {
        "count": count,
        "meta": {"count": count, "page_count": max(math.ceil(count / size), 1), "page_number": page,
                 "page_size": size},
        "results": [{"key": key, "id": o["id"]} for o in objects],
        key: {o["id"]: o for o in objects},
    }


def _principal(request: web.Request) -> Principal:
    return request[keys.PRINCIPAL]


def int_id(request: web.Request, name: str, what: str) -> int:
    """A path's integer id; anything else names nothing (404)."""
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise not_found(what)
    return int(raw)


# --- values -------------------------------------------------------------------------------------------


@routes.post("/api/v1/custom_field_values")
async def write_values(request: web.Request) -> web.Response:
    """Write one value, or up to 100 (all or nothing)."""
    body = await read_json(request, WriteValuesIn)
    items = [CommandItem(subject_type=i.subject_type, subject_id=i.subject_id, custom_field_id=i.custom_field_id,
                         value=i.value, **i.change_options()) for i in body.items()]
    respond_async = wants_async(request)
    submitted = await request.app[keys.SUBMITTER].submit(_principal(request), items,
                                       idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request),
                                       wait=not respond_async)
    if submitted.outcome is None:
        return accepted(submitted, respond_async=respond_async)
    return render_outcome(submitted.outcome)


def render_outcome(outcome: Outcome) -> web.Response:
    """A write's outcome as Kantata answers it: 200 with the values, or the errors with their status."""
    if outcome["status"] == "failed":
        raise ApiError(failure_status(outcome), outcome["errors"])
    return json_response(listing(VALUES, [render_value(v) for v in outcome["values"]]))


def render_value(value: dict[str, Any]) -> dict[str, Any]:
    """A stored value in Kantata's form (``"hidden": true`` and no value when the writer may not read it)."""
    out = {
        "id": str(value["id"]),
        "subject_type": value["subject_type"],
        "subject_id": render_subject_id(SubjectType(value["subject_type"]), value["subject_id"]),
        "custom_field_id": str(value["custom_field_id"]),
        "custom_field_name": value["custom_field_name"],
        "value_type": value["value_type"],
        "value": value["value"],
        "sequence": value["sequence"],
        "setter": value["setter"],
        "operation_id": value["operation_id"],
        "external_reference": {"external_id": value.get("external_id"),
                               "external_source": value.get("external_source")},
        "origin": value.get("origin"),
        "created_at": value["created_at"],
        "updated_at": value["created_at"],
    }
    if value.get("hidden"):
        out["hidden"] = True
    return out


@routes.get("/api/v1/operations/{operation_id}")
async def get_operation(request: web.Request) -> web.Response:
    """Where an accepted write stands: pending, succeeded (with its result) or failed (with its errors)."""
    try:
        operation_id = uuid.UUID(request.match_info["operation_id"])
    except ValueError:
        raise not_found("operation") from None
    pool = request.app[keys.POOL]
    row = await stored_operations.operation_of(pool, operation_id=operation_id,
                                               workspace_id=_principal(request).workspace_id)
    if row is None:
        raise not_found("operation")
    body: dict[str, Any] = {"id": str(operation_id), "status": row["status"]}
    outcome = row["outcome"]
    if row["status"] == "succeeded":
        values = await readable(pool, _principal(request), outcome["values"])
        body["result"] = listing(VALUES, [render_value(v) for v in values])
    elif row["status"] == "failed":
        body["errors"] = outcome["errors"]
        body["http_status"] = failure_status(outcome)
    return json_response(body)


async def readable(pool: asyncpg.Pool[Any], principal: Principal,
                   values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The values (of an outcome) the principal may read: an operation shows no more than the values do."""
    if principal.is_admin or not values:
        return values
    allowed = await stored_values.readable_ordinals(
        pool, workspace_id=principal.workspace_id, reader=Reader(principal.user_id, principal.account_role),
        subject_types=[v["subject_type"] for v in values], subject_ids=[v["subject_id"] for v in values],
        field_ids=[v["custom_field_id"] for v in values])
    return [v for n, v in enumerate(values, 1) if n in allowed]


# --- fields -------------------------------------------------------------------------------------------


async def render_fields(pool: asyncpg.Pool[Any], rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    """Fields (``custom_fields`` rows) in Kantata's form, with their choices."""
    choices: dict[int, list[dict[str, Any]]] = {}
    for c in await store_fields.field_choices(pool, field_ids=[r["id"] for r in rows]):
        choices.setdefault(c["custom_field_id"], []).append(
            {"id": str(c["id"]), "label": c["label"], "position": c["position"]})
    return [
        {
            "id": str(r["id"]), "name": r["name"], "description": r["description"],
            "subject_type": r["subject_type"], "value_type": r["value_type"],
            "relation_target": r["relation_target"], "relation_multi": r["relation_multi"],
            "write_access": r["write_access"], "read_access": r["read_access"],
            "required": r["is_required"], "default_value": r["default_value"],
            "unique_constraint": r["unique_constraint"],
            "external_reference": {"external_id": r["external_id"], "external_source": r["external_source"]},
            "choices": choices.get(r["id"], []),
            "created_at": r["created_at"].isoformat(), "updated_at": r["updated_at"].isoformat(),
        }
        for r in rows
    ]


async def _field_answer(pool: asyncpg.Pool[Any], row: asyncpg.Record, status: int = 200) -> web.Response:
    return json_response(listing(FIELDS, await render_fields(pool, [row])), status)


#: What a choice field has instead of a default value, in this face's words.
_DEFAULT_HINT = "choice fields take no default value"


@routes.post("/api/v1/custom_fields")
async def create_field(request: web.Request) -> web.Response:
    """Define a custom field (with its choices, for choice fields)."""
    require_admin(request[keys.PRINCIPAL])
    body = (await read_json(request, CustomFieldCreate)).custom_field
    reference = body.external_reference
    spec = definitions.FieldSpec(
        name=body.name, subject_type=SubjectType(body.subject_type), value_type=ValueType(body.value_type),
        relation_target=body.relation_target, relation_multi=body.relation_multi, description=body.description,
        write_access=body.write_access, read_access=body.read_access, required=body.required,
        default_value=body.default_value, unique=body.unique_constraint,
        external_id=reference.external_id if reference else None,
        external_source=reference.external_source if reference else None, choices=body.choice_labels())
    pool = request.app[keys.POOL]
    row = await definitions.define_field(pool, _by(request), spec=spec,
                                         default_hint=_DEFAULT_HINT)
    return await _field_answer(pool, row, 201)


@routes.get("/api/v1/custom_fields")
async def list_fields(request: web.Request) -> web.Response:
    """The workspace's custom fields, paginated (``page``, ``per_page`` up to 200)."""
    page, per_page = pagination(request)
    workspace_id = _principal(request).workspace_id
    pool = request.app[keys.POOL]
    rows = await store_fields.list_fields(pool, workspace_id=workspace_id, limit=per_page,
                                          offset=(page - 1) * per_page)
    total = await store_fields.count_fields(pool, workspace_id=workspace_id)
    return json_response(listing(FIELDS, await render_fields(pool, rows), total=total, page=page, per_page=per_page))


def pagination(request: web.Request) -> tuple[int, int]:
    """``page`` (from 1) and ``per_page`` (1 to 200, default 20) of a listing request."""
    try:
        page = int(request.query.get("page", "1"))
        per_page = int(request.query.get("per_page", "20"))
    except ValueError:
        raise ApiError.one(400, "validation", "page and per_page are integers") from None
    if not 1 <= page <= 10**9 or not 1 <= per_page <= 200:
        raise ApiError.one(400, "validation", "page is 1 to 1000000000; per_page is 1 to 200")
    return page, per_page


@routes.get("/api/v1/custom_fields/{field_id}")
async def get_field(request: web.Request) -> web.Response:
    """One custom field."""
    pool = request.app[keys.POOL]
    row = await definitions.field_of(pool, workspace_id=_principal(request).workspace_id,
                                     field_id=int_id(request, "field_id", "custom field"))
    return await _field_answer(pool, row)


@routes.patch("/api/v1/custom_fields/{field_id}")
async def update_field(request: web.Request) -> web.Response:
    """Rename, redescribe, change access levels, or add choices; type and subject are fixed."""
    require_admin(request[keys.PRINCIPAL])
    field_id = int_id(request, "field_id", "custom field")
    body = (await read_json(request, CustomFieldUpdate)).custom_field
    reference = body.external_reference
    changes = definitions.FieldChanges(
        name=body.name, description=body.description, write_access=body.write_access,
        read_access=body.read_access, required=body.required, set_default="default_value" in body.model_fields_set,
        default_value=body.default_value, external_id=reference.external_id if reference else None,
        external_source=reference.external_source if reference else None,
        add_choices=[c if isinstance(c, str) else c.label for c in body.add_choices])
    pool = request.app[keys.POOL]
    row = await definitions.change_field(pool, _by(request), field_id=field_id,
                                         changes=changes, default_hint=_DEFAULT_HINT)
    return await _field_answer(pool, row)


@routes.delete("/api/v1/custom_fields/{field_id}")
async def delete_field(request: web.Request) -> web.Response:
    """Delete a field and all its values (each announced as deleted); writes after it find no field."""
    require_admin(request[keys.PRINCIPAL])
    field_id = int_id(request, "field_id", "custom field")
    principal = _principal(request)
    await definitions.field_of(request.app[keys.POOL], workspace_id=principal.workspace_id, field_id=field_id)
    respond_async = wants_async(request)
    submitted = await definitions.delete_field(
        request.app[keys.SUBMITTER], principal, field_id, idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request), wait=not respond_async)
    return deletion_answer(submitted, respond_async=respond_async)
