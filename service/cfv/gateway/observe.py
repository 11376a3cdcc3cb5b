"""What the gateway tells about each request: its id, an access log line, and its metrics.

Every request has an id: the client's ``X-Request-ID`` when it is usable (1 to 128 visible ASCII characters),
else a fresh one (UUID-shaped). It is echoed in the answer, bound to every log line the request causes, carried in
the commands it publishes (the worker logs it, and the change events keep it as their ``correlationid``), and
named by a 500 answer.

This runs on every request, so it is kept cheap (a few microseconds): ids from a counter, metric children cached
per route, the access line skipped without building it when it would not be logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from cfv import logs, metrics
from cfv.gateway import keys

HEADER = "X-Request-ID"
UNMATCHED = "<unmatched>"  # the route label of a path no route serves: one label, whatever was asked
ACCESS_LOG = web.AppKey("access_log", bool)  # log an access line per request (CFV_ACCESS_LOG, and INFO enabled)
_USABLE = re.compile(r"[!-~]{1,128}")  # visible ASCII: safe in a header, a log line and an event as it is

access_log = structlog.get_logger("cfv.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _RequestIds:
    """Fresh request ids: one random UUID (version 4) per process, its last 32 bits counting (a uuid4 each costs a
    system call; 90 random bits per process keep them unique)."""

    def __init__(self) -> None:
        base = uuid.uuid4().hex
        self._prefix = f"{base[:8]}-{base[8:12]}-{base[12:16]}-{base[16:20]}-{base[20:24]}"
        self._count = 0

    def next(self) -> str:
        self._count = (self._count + 1) & 0xFFFFFFFF
        return f"{self._prefix}{self._count:08x}"


_ids = _RequestIds()
_counted: dict[tuple[str, str, int], Any] = {}  # (route, method, status): its counter child
_timed: dict[tuple[str, str], Any] = {}  # (route, method): its histogram child


def install(app: web.Application) -> None:
    """Decide once whether the app logs access lines: the setting, and INFO lines being logged at all."""
    app[ACCESS_LOG] = app[keys.SETTINGS].access_log and logs.enabled(logging.INFO)


def request_id_of(request: web.Request) -> str:
    """The id of ``request`` (set by :func:`observe_middleware`)."""
    return request[keys.REQUEST_ID]


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its id, answer with it, log one access line and count the request."""
    started = time.perf_counter()
    given = request.headers.get(HEADER)
    request_id = request[keys.REQUEST_ID] = given if given is not None and _USABLE.fullmatch(given) \
        else _ids.next()
    token = logs.REQUEST_ID.set(request_id)
    status = 500
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
        method = request.method
        counter = _counted.get((route, method, status))
        if counter is None:
            counter = _counted[(route, method, status)] = metrics.HTTP_REQUESTS.labels(route, method, str(status))
        counter.inc()
        timer = _timed.get((route, method))
        if timer is None:
            timer = _timed[(route, method)] = metrics.HTTP_LATENCY.labels(route, method)
        timer.observe(elapsed)
        if request.app[ACCESS_LOG]:
            principal = request.get(keys.PRINCIPAL)
            access_log.info("request", method=method, route=route, status=status,
                            duration_ms=round(elapsed * 1000, 2),
                            key_id=principal.key_id if principal is not None else None)
        logs.REQUEST_ID.reset(token)


def _route(request: web.Request) -> str:
    """The template of the route that served ``request`` (``/api/v1/custom_fields/{id}``), never its path: labels
    and log fields stay few, and name no workspace's ids."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED
