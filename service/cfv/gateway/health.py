"""Probes: ``/livez`` answers while the process serves; ``/readyz`` says whether PostgreSQL, RabbitMQ and Redis
answer, each within a second, and answers 503 naming the failing part otherwise (a load balancer or Kubernetes
then sends no traffic here). Unauthenticated, outside ``/api/``: they name nothing of any workspace.
``/healthz``, the first probe, stays as ``/livez``'s alias."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from cfv.gateway import keys
from cfv.gateway.errors import json_response
from cfv.gateway.limits import LIMITER
from cfv.store.database import ping

routes = web.RouteTableDef()

CHECK_SECONDS = 1.0


@routes.get("/livez")
@routes.get("/healthz")
async def livez(_: web.Request) -> web.Response:
    """The process runs and serves HTTP."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Each dependency's state; 200 when all answer, else 503."""
    app = request.app
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres": lambda: ping(app[keys.POOL]),
        "rabbitmq": app[keys.SUBMITTER].check_broker,
        "redis": app[LIMITER].ping,
    }
    results = await asyncio.gather(*(_check(check) for check in checks.values()))
    states = dict(zip(checks, results, strict=True))
    ready = all(state == "ok" for state in states.values())
    return json_response({"status": "ready" if ready else "unready", "checks": states}, 200 if ready else 503)


async def _check(check: Callable[[], Awaitable[object]]) -> str:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await check()
        return "ok"
    except Exception as error:  # whatever keeps it from answering is the answer
        return f"unreachable: {type(error).__name__}"
