"""What the gateway tells about each request: its id, an access log line, and its metrics.

Every request has an id: the client's ``X-Request-ID`` when it is usable (1 to 128 visible ASCII characters),
else a fresh UUID. It is echoed in the answer, bound to every log line the request causes, carried in the
commands it publishes (the worker logs it, and the change events keep it as their ``correlationid``), and named
by a 500 answer.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from cfv import metrics
from cfv.gateway import keys

HEADER = "X-Request-ID"
UNMATCHED = "<unmatched>"  # the route label of a path no route serves: one label, whatever was asked
_USABLE = re.compile(r"[!-~]{1,128}")  # visible ASCII: safe in a header, a log line and an event as it is

access_log = structlog.get_logger("cfv.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id_of(request: web.Request) -> str:
    """The id of ``request`` (set by :func:`observe_middleware`)."""
    return request[keys.REQUEST_ID]


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id, answer with it, log one access line and count the request."""
    started = time.perf_counter()
    given = request.headers.get(HEADER)
    request_id = request[keys.REQUEST_ID] = given if given is not None and _USABLE.fullmatch(given) \
        else str(uuid.uuid4())
    status = 500
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
            status = response.status
            response.headers[HEADER] = request_id
            return response
        except web.HTTPException as answer:  # an answer raised past the error middleware (a redirect)
            status = answer.status
            answer.headers[HEADER] = request_id
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = _route(request)
            metrics.HTTP_REQUESTS.labels(route, request.method, str(status)).inc()
            metrics.HTTP_LATENCY.labels(route, request.method).observe(elapsed)
            if request.app[keys.SETTINGS].access_log:
                principal = request.get(keys.PRINCIPAL)
                access_log.info("request", method=request.method, route=route, status=status,
                                duration_ms=round(elapsed * 1000, 2),
                                key_id=principal.key_id if principal is not None else None)


def _route(request: web.Request) -> str:
    """The template of the route that served ``request`` (``/api/v1/custom_fields/{id}``), never its path: labels
    and log fields stay few, and name no workspace's ids."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED
