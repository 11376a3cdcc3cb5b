"""The Kantata face's custom field sets: ``/api/v1/custom_field_sets``."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.kantata import SetCreate, SetUpdate

from cfv.gateway import definitions, faces, keys
from cfv.gateway.auth import require_admin
from cfv.gateway.errors import json_response, not_found
from cfv.gateway.http import read_json
from cfv.gateway.kantata import KANTATA, int_id, listing, pagination
from cfv.gateway.observe import request_id_of
from cfv.store import fields as store_fields

routes = web.RouteTableDef()
table = faces.Table(KANTATA, routes)  # definitions and reads
SETS = "custom_field_sets"


def _by(request: web.Request) -> definitions.By:
    """Who changes definitions with this request."""
    return definitions.By.of(request[keys.PRINCIPAL], request_id_of(request))


def _render(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "subject_type": row["subject_type"],
            "custom_field_ids": [str(i) for i in row["custom_field_ids"]],
            "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}


def _workspace_id(request: web.Request) -> int:
    return request[keys.PRINCIPAL].workspace_id


async def _answer(pool: asyncpg.Pool[Any], workspace_id: int, set_id: int, status: int = 200) -> web.Response:
    row = await store_fields.get_set(pool, workspace_id=workspace_id, set_id=set_id)
    if row is None:
        raise not_found("custom field set")
    return json_response(listing(SETS, [_render(row)]), status)


@routes.get("/api/v1/custom_field_sets")
async def list_sets(request: web.Request) -> web.Response:
    """The workspace's custom field sets, paginated."""
    page, per_page = pagination(request)
    pool = request.app[keys.POOL]
    rows = await store_fields.list_sets(pool, workspace_id=_workspace_id(request), limit=per_page,
                                        offset=(page - 1) * per_page)
    total = await store_fields.count_sets(pool, workspace_id=_workspace_id(request))
    return json_response(listing(SETS, [_render(r) for r in rows], total=total, page=page, per_page=per_page))


@routes.post("/api/v1/custom_field_sets")
async def create_set(request: web.Request) -> web.Response:
    """Create a set of fields of one subject type."""
    require_admin(request[keys.PRINCIPAL])
    spec = (await read_json(request, SetCreate)).custom_field_set
    workspace_id = _workspace_id(request)
    pool = request.app[keys.POOL]
    set_id = await definitions.define_set(pool, _by(request), spec=definitions.SetSpec(
        name=spec.name, subject_type=spec.subject_type, field_ids=spec.custom_field_ids))
    return await _answer(pool, workspace_id, set_id, 201)


@routes.get("/api/v1/custom_field_sets/{set_id}")
async def get_set(request: web.Request) -> web.Response:
    """One set."""
    return await _answer(request.app[keys.POOL], _workspace_id(request),
                         int_id(request, "set_id", "custom field set"))


@routes.patch("/api/v1/custom_field_sets/{set_id}")
async def update_set(request: web.Request) -> web.Response:
    """Rename a set, or give it another list of fields."""
    require_admin(request[keys.PRINCIPAL])
    set_id = int_id(request, "set_id", "custom field set")
    changes = (await read_json(request, SetUpdate)).custom_field_set
    workspace_id = _workspace_id(request)
    pool = request.app[keys.POOL]
    await definitions.change_set(pool, _by(request), set_id=set_id, name=changes.name,
                                 field_ids=changes.custom_field_ids)
    return await _answer(pool, workspace_id, set_id)


@routes.delete("/api/v1/custom_field_sets/{set_id}")
async def delete_set(request: web.Request) -> web.Response:
    """Delete a set (its fields stay)."""
    require_admin(request[keys.PRINCIPAL])
    set_id = int_id(request, "set_id", "custom field set")
    await definitions.delete_set(request.app[keys.POOL], _by(request), set_id=set_id)
    return web.Response(status=204)
