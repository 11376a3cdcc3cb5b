"""Placing subjects in projects: which project's permissions govern a Story's or a Resource's values.

The placement is a command like any write, applied by the workers in the workspace's order, so a placement
followed by a write is checked with the placement in force. Integrations may publish the same command
(``register_subjects``) straight to the queue.
"""

from __future__ import annotations

from aiohttp import web
from cfv_schemas.kantata import SubjectProjectsIn

from cfv.domain.access import canonical_project
from cfv.domain.fields import SubjectType
from cfv.domain.values import render_subject_id
from cfv.gateway import keys
from cfv.gateway.errors import ApiError, json_response
from cfv.gateway.http import accepted, failure_status, read_json, wants_async
from cfv.gateway.observe import request_id_of

routes = web.RouteTableDef()


@routes.put("/api/v1/subject_projects")
async def register_subjects(request: web.Request) -> web.Response:
    """Place up to 100 subjects in projects (all or nothing); 200 with the placements once applied."""
    body = await read_json(request, SubjectProjectsIn)
    respond_async = wants_async(request)
    submitted = await request.app[keys.SUBMITTER].register_subjects(
        request[keys.PRINCIPAL], body.subject_projects, idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request),
        wait=not respond_async)
    if submitted.outcome is None:
        return accepted(submitted, respond_async=respond_async)
    if submitted.outcome["status"] == "failed":
        raise ApiError(failure_status(submitted.outcome), submitted.outcome["errors"])
    return json_response({"subject_projects": [
        {"subject_type": s.subject_type,
         "subject_id": render_subject_id(SubjectType(s.subject_type), str(s.subject_id)),
         "project": canonical_project(s.project)} for s in body.subject_projects]})
