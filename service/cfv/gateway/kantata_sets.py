"""The Kantata face's custom field sets: ``/api/v1/custom_field_sets``."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.kantata import SetCreate, SetUpdate

from cfv.gateway import faces, keys
from cfv.gateway.auth import require_admin
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import read_json
from cfv.gateway.kantata import KANTATA, int_id, listing, pagination
from cfv.store.database import Connection
from cfv.store.queries import query

routes = web.RouteTableDef()
table = faces.Table(KANTATA, routes)  # definitions and reads
SETS = "custom_field_sets"


def _render(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": str(row["id"]), "name": row["name"], "subject_type": row["subject_type"],
            "custom_field_ids": [str(i) for i in row["custom_field_ids"]],
            "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}


def _workspace_id(request: web.Request) -> int:
    return request[keys.PRINCIPAL].workspace_id


async def _checked_fields(connection: Connection, workspace_id: int, field_ids: list[int],
                          subject_type: str) -> list[int]:
    """The ids, without repeats, if each names a live field of the workspace with the set's subject type."""
    field_ids = list(dict.fromkeys(field_ids))
    known = {r["id"] for r in await connection.fetch(query("fields_for_set"), workspace_id,
                                                     [i for i in field_ids if 0 < i < 2**63], subject_type)}
    wrong = [i for i in field_ids if i not in known]
    if wrong:
        raise ApiError(422, [{"type": "validation", "field": "custom_field_ids", "custom_field_id": i,
                              "message": f"custom field {i} is not a {subject_type} field of this workspace"}
                             for i in wrong])
    return field_ids


async def _answer(pool: asyncpg.Pool[Any], workspace_id: int, set_id: int, status: int = 200) -> web.Response:
    rows = await pool.fetch(query("list_sets"), workspace_id, set_id, 1, 0)
    if not rows:
        raise not_found("custom field set")
    return json_response(listing(SETS, [_render(rows[0])]), status)


@routes.get("/api/v1/custom_field_sets")
async def list_sets(request: web.Request) -> web.Response:
    """The workspace's custom field sets, paginated."""
    page, per_page = pagination(request)
    pool = request.app[keys.POOL]
    rows = await pool.fetch(query("list_sets"), _workspace_id(request), None, per_page, (page - 1) * per_page)
    total = await pool.fetchval(query("count_sets"), _workspace_id(request))
    return json_response(listing(SETS, [_render(r) for r in rows], total=total, page=page, per_page=per_page))


@routes.post("/api/v1/custom_field_sets")
async def create_set(request: web.Request) -> web.Response:
    """Create a set of fields of one subject type."""
    require_admin(request[keys.PRINCIPAL])
    spec = (await read_json(request, SetCreate)).custom_field_set
    workspace_id = _workspace_id(request)
    pool = request.app[keys.POOL]
    async with pool.acquire() as connection, connection.transaction():
        field_ids = await _checked_fields(connection, workspace_id, spec.custom_field_ids, spec.subject_type)
        set_id = await connection.fetchval(query("insert_set"), workspace_id, spec.name, spec.subject_type,
                                           field_ids)
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
    async with pool.acquire() as connection, connection.transaction():
        rows = await connection.fetch(query("list_sets"), workspace_id, set_id, 1, 0)
        if not rows:
            raise not_found("custom field set")
        field_ids = None
        if changes.custom_field_ids is not None:
            field_ids = await _checked_fields(connection, workspace_id, changes.custom_field_ids,
                                              rows[0]["subject_type"])
        await connection.execute(query("update_set"), workspace_id, set_id, changes.name, field_ids)
    return await _answer(pool, workspace_id, set_id)


@routes.delete("/api/v1/custom_field_sets/{set_id}")
async def delete_set(request: web.Request) -> web.Response:
    """Delete a set (its fields stay)."""
    require_admin(request[keys.PRINCIPAL])
    set_id = int_id(request, "set_id", "custom field set")
    if await request.app[keys.POOL].fetchval(query("delete_set"), _workspace_id(request), set_id) is None:
        raise not_found("custom field set")
    return web.Response(status=204)
