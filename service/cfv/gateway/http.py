"""Request and response helpers both API faces share."""

from __future__ import annotations

from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cfv.gateway.errors import ApiError, from_validation, json_response
from cfv.gateway.submit import Submitted
from cfv.worker.apply import Outcome

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body parsed as ``model``, or a 400 naming what is wrong."""
    body = await request.read()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError.one(400, "validation", f"the body is not valid JSON: {error}") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_validation(error) from None


def failure_status(outcome: Outcome, *, invalid: int = 422, conflict: int = 422) -> int:
    """The status of a failed write: 500 for an internal failure, 412 for a stale version, 404 when
    everything refused was unknown, ``conflict`` for a clash, else ``invalid`` (each face has its codes)."""
    types = {e["type"] for e in outcome["errors"]}
    if "internal" in types:
        return 500
    if "precondition_failed" in types:
        return 412
    if types == {"not_found"}:
        return 404
    if "conflict" in types:
        return conflict
    return invalid


def wants_async(request: web.Request) -> bool:
    """Whether the client asked not to wait for the outcome (``Prefer: respond-async``)."""
    return "respond-async" in request.headers.get("Prefer", "").lower()


def accepted(submitted: Submitted, *, respond_async: bool) -> web.Response:
    """202 for a write whose outcome is not known yet, pointing at its operation."""
    location = f"/api/v1/operations/{submitted.operation_id}"
    headers = {"Location": location}
    if respond_async:
        headers["Preference-Applied"] = "respond-async"
    return json_response({"operation": {"id": str(submitted.operation_id), "status": "pending",
                                        "location": location}}, 202, headers)
