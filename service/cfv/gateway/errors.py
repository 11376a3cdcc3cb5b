"""Error answers: built face-neutral (a status and error objects ``{"type", "message", "field", ...}``), and
rendered in the shape of the face the request came to (:mod:`cfv.gateway.faces`: each face declares its shape
beside its routes): Kantata's ``{"errors": [...]}`` or Plane's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from cfv.faults import TRANSIENT_ERRORS
from cfv.gateway import faces, keys

log = structlog.get_logger("cfv.gateway")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error answer: an HTTP status and one or more error objects."""

    def __init__(self, status: int, errors: Iterable[dict[str, Any]], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.errors = list(errors)
        self.headers = headers or {}

    @classmethod
    def one(cls, status: int, type_: str, message: str, field: str | None = None,
            headers: dict[str, str] | None = None) -> ApiError:
        """An error answer with a single error object."""
        return cls(status, [{"type": type_, "message": message, "field": field}], headers)


def not_found(what: str) -> ApiError:
    """404: unknown, or another workspace's (never 403, so ids cannot be probed)."""
    return ApiError.one(404, "not_found", f"{what} not found")


def unavailable(what: str) -> ApiError:
    """503: a dependency is unreachable; nothing was applied."""
    return ApiError.one(503, "unavailable", f"{what} is unreachable; nothing was applied, retry later",
                        headers={"Retry-After": "5"})


def unconfirmed(operation_id: object) -> ApiError:
    """503 for a write the broker may hold after all: say so, and how to retry safely."""
    return ApiError.one(
        503, "unavailable",
        f"the message broker did not confirm the write (operation {operation_id}); it may still be applied. "
        "Retry with the same Idempotency-Key to have it applied at most once",
        headers={"Retry-After": "5"})


def never_applied(operation_id: object) -> ApiError:
    """503 for a write the broker did not confirm, now certain never to be applied (its operation is failed)."""
    return ApiError.one(
        503, "unavailable",
        f"the message broker did not confirm the write in time (operation {operation_id}); it was not applied and "
        "never will be: send it again", headers={"Retry-After": "1"})


def from_validation(error: ValidationError, prefix: str = "") -> ApiError:
    """400 listing every problem pydantic found in a request body."""
    errors = []
    for problem in error.errors(include_url=False):
        location = [str(part) for part in problem["loc"]]
        errors.append({"type": "validation", "message": problem["msg"],
                       "field": ".".join([prefix, *location] if prefix else location) or None})
    return ApiError(400, errors)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer, encoded with orjson."""
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


_HTTP_ERROR_TYPES = {400: "validation", 401: "authentication", 404: "not_found", 405: "method_not_allowed",
                     413: "request_too_large", 429: "rate_limited"}


class ClientGone(Exception):
    """The client went away before its request was read whole: nothing to answer, and nobody's fault here."""


def error_response(request: web.Request, status: int, errors: list[dict[str, Any]],
                   headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in the shape of the face of the route that matched the request (or, if none did, of the
    face whose URL space holds its path)."""
    face = faces.declared(request).face
    body = face.error_body if face is not None else faces.native_error_body
    return json_response(body(status, errors), status, headers)


def render_error(path: str, status: int, errors: list[dict[str, Any]],
                 headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in the shape of the face whose URL space holds ``path`` (for a request that was never
    routed: aiohttp could not parse it)."""
    face = faces.face_by_path(path)
    body = face.error_body if face is not None else faces.native_error_body
    return json_response(body(status, errors), status, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a structured JSON error (dependencies being down is a 503, never a 500), and put
    the ``X-RateLimit-*`` headers of the budget the request was counted against on whatever answer it gets."""
    response = await _answer(request, handler)
    budget = request.get(keys.BUDGET)
    if budget is not None:
        response.headers.update(budget.headers())
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error.status, error.errors, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = {413: f"the request body is larger than {request.app[keys.SETTINGS].max_body_bytes} bytes"
                   }.get(error.status, error.reason)
        return error_response(request, error.status, [{"type": _HTTP_ERROR_TYPES.get(error.status, "http"),
                                                        "message": message, "field": None}])
    except ClientGone:
        log.info("client went away mid-request", path=request.path, method=request.method)
        return error_response(request, 400, [{"type": "bad_request", "message": "the request body was cut short",
                                              "field": None}])
    except TRANSIENT_ERRORS as error:
        log.warning("dependency unreachable", error=repr(error), path=request.path)
        error_ = unavailable("the database")
        return error_response(request, 503, error_.errors, error_.headers)
    except Exception:
        log.exception("unexpected error", path=request.path, method=request.method)
        request_id = request.get(keys.REQUEST_ID)
        return error_response(request, 500, [{"type": "internal", "message": "an internal error occurred; it was "
                                              f"logged with request id {request_id}", "field": None}])
