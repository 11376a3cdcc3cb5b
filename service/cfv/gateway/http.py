"""Request and response helpers both API faces share."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cfv.contracts import Outcome
from cfv.gateway import keys
from cfv.gateway.bodies import JsonLimitExceeded, check_json_limits, too_deep
from cfv.gateway.errors import ApiError, ClientGone, from_validation, json_response
from cfv.gateway.submit import Submitted

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body parsed as ``model``, or a 400 naming what is wrong."""
    data = await read_json_data(request)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_validation(error) from None


async def read_json_data(request: web.Request) -> Any:
    """The request body as JSON within the request limits (``CFV_MAX_JSON_DEPTH``, ``CFV_MAX_STRING_LENGTH``),
    or a 400 naming what is wrong (413 beyond ``CFV_MAX_BODY_BYTES``, from aiohttp). Every handler reads its
    body through here (or :func:`read_json`)."""
    body = await read_body(request)
    settings = request.app[keys.SETTINGS]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error) or "recursion" in str(error):  # orjson's own limit (1024) is ours too
            raise _limit_error(too_deep(settings.max_json_depth)) from None
        raise ApiError.one(400, "validation", f"the body is not valid JSON: {error}") from None
    try:
        check_json_limits(data, settings.max_json_depth, settings.max_string_length)
    except JsonLimitExceeded as error:
        raise _limit_error(error) from None
    return data


async def read_body(request: web.Request) -> bytes:
    """The request body, or :class:`ClientGone` when the client left before sending it all (not a lost
    dependency, which the same ``ConnectionResetError`` would otherwise be taken for)."""
    try:
        return await request.read()
    except ConnectionResetError:
        raise ClientGone from None


def _limit_error(error: JsonLimitExceeded) -> ApiError:
    return ApiError.one(400, "limit_exceeded", error.message, error.field)


def failure_status(outcome: Outcome, *, invalid: int = 422, conflict: int = 422) -> int:
    """The status of a failed write: 500 for an internal failure, 503 for one the broker did not confirm in time
    (never applied), 401/403 for refused credentials/access, 412 for a stale version, 404 when everything refused
    was unknown, ``conflict`` for a clash, else ``invalid`` (each face has its codes)."""
    types = {e["type"] for e in outcome["errors"]}
    if "internal" in types:
        return 500
    if "unavailable" in types:
        return 503
    if "unauthenticated" in types:
        return 401
    if "forbidden" in types:
        return 403
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


def deletion_answer(submitted: Submitted, *, respond_async: bool) -> web.Response:
    """The answer to a deletion the workers applied: 204 once done, 202 while it is not, or its failure."""
    if submitted.outcome is None:
        return accepted(submitted, respond_async=respond_async)
    if submitted.outcome["status"] == "failed":
        raise ApiError(failure_status(submitted.outcome), submitted.outcome["errors"])
    return web.Response(status=204)
