"""The Kantata face's choices: ``/api/v1/custom_field_choices`` (the options of single and multi fields)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.kantata import ChoiceCreate, ChoiceUpdate

from cfv.domain.fields import CHOICE_TYPES
from cfv.gateway import definitions, faces, keys
from cfv.gateway.auth import require_admin
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import read_json
from cfv.gateway.kantata import KANTATA, int_id, listing, pagination
from cfv.gateway.observe import request_id_of
from cfv.store import fields as store_fields
from cfv.store.fields import Row

routes = web.RouteTableDef()
table = faces.Table(KANTATA, routes)  # definitions and reads
CHOICES = "custom_field_choices"


def _by(request: web.Request) -> definitions.By:
    """Who changes definitions with this request."""
    return definitions.By.of(request[keys.PRINCIPAL], request_id_of(request))


def render_choice(row: asyncpg.Record) -> dict[str, Any]:
    """A choice in Kantata's form."""
    return {
        "id": str(row["id"]), "custom_field_id": str(row["custom_field_id"]), "label": row["label"],
        "position": row["position"],
        "external_reference": {"external_id": row["external_id"], "external_source": row["external_source"]},
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def _workspace_id(request: web.Request) -> int:
    return request[keys.PRINCIPAL].workspace_id


async def _choice(request: web.Request) -> Row:
    row = await store_fields.choice_in_workspace(request.app[keys.POOL], workspace_id=_workspace_id(request),
                                                 choice_id=int_id(request, "choice_id", "choice"))
    if row is None:
        raise not_found("choice")
    return row


@routes.get("/api/v1/custom_field_choices")
async def list_choices(request: web.Request) -> web.Response:
    """The workspace's choices (``custom_field_id=1,2`` to filter), paginated."""
    page, per_page = pagination(request)
    raw = request.query.get("custom_field_id")
    field_ids = None
    if raw is not None:
        parts = raw.split(",")
        if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
            raise ApiError.one(400, "validation", "custom_field_id is a comma-separated list of ids",
                               "custom_field_id")
        field_ids = [int(p) for p in parts]
    pool = request.app[keys.POOL]
    rows = await store_fields.choices_in_workspace(pool, workspace_id=_workspace_id(request), field_ids=field_ids,
                                                   limit=per_page, offset=(page - 1) * per_page)
    total = await store_fields.count_choices_in_workspace(pool, workspace_id=_workspace_id(request),
                                                          field_ids=field_ids)
    return json_response(listing(CHOICES, [render_choice(r) for r in rows], total=total, page=page,
                                 per_page=per_page))


@routes.post("/api/v1/custom_field_choices")
async def create_choice(request: web.Request) -> web.Response:
    """Add a choice to a single or multi choice field."""
    require_admin(request[keys.PRINCIPAL])
    spec = (await read_json(request, ChoiceCreate)).custom_field_choice
    pool = request.app[keys.POOL]
    field = None
    if 0 < spec.custom_field_id < 2**63:  # beyond bigint an id names no field
        field = await store_fields.get_field(pool, workspace_id=_workspace_id(request), field_id=spec.custom_field_id)
    if field is None:
        raise ApiError.one(404, "not_found", "custom field not found", "custom_field_id")
    if field["value_type"] not in CHOICE_TYPES:
        raise ApiError.one(422, "validation", "only single and multi fields have choices", "custom_field_id")
    reference = spec.external_reference
    row = await definitions.define_choice(pool, _by(request), field=field,
                                          spec=definitions.ChoiceSpec(
                                              label=spec.label, position=spec.position,
                                              external_id=reference.external_id if reference else None,
                                              external_source=reference.external_source if reference else None))
    return json_response(listing(CHOICES, [render_choice(row)]), 201)


@routes.get("/api/v1/custom_field_choices/{choice_id}")
async def get_choice(request: web.Request) -> web.Response:
    """One choice."""
    return json_response(listing(CHOICES, [render_choice(await _choice(request))]))


@routes.patch("/api/v1/custom_field_choices/{choice_id}")
async def update_choice(request: web.Request) -> web.Response:
    """Relabel, move, or re-reference a choice."""
    require_admin(request[keys.PRINCIPAL])
    row = await _choice(request)
    changes = (await read_json(request, ChoiceUpdate)).custom_field_choice
    reference = changes.external_reference
    pool = request.app[keys.POOL]
    field = await definitions.field_of(pool, workspace_id=_workspace_id(request), field_id=row["custom_field_id"])
    updated = await definitions.change_choice(
        pool, _by(request), field=field, choice_id=row["id"],
        changes=definitions.ChoiceChanges(label=changes.label, position=changes.position,
                                          external_id=reference.external_id if reference else None,
                                          external_source=reference.external_source if reference else None))
    return json_response(listing(CHOICES, [render_choice(updated)]))


@routes.delete("/api/v1/custom_field_choices/{choice_id}")
async def remove_choice(request: web.Request) -> web.Response:
    """Delete a choice no value holds (409 otherwise)."""
    require_admin(request[keys.PRINCIPAL])
    row = await _choice(request)
    await definitions.delete_choice(request.app[keys.POOL], _by(request),
                                    field_id=row["custom_field_id"], choice_id=row["id"])
    return web.Response(status=204)
