"""Probes: ``/livez`` answers while the process serves; ``/readyz`` says whether PostgreSQL, RabbitMQ and Redis
answer, each within a second, and answers 503 naming the failing part otherwise (a load balancer or Kubernetes
then sends no traffic here). Unauthenticated, outside ``/api/``: they name nothing of any workspace.
``/healthz``, the first probe, stays as ``/livez``'s alias. The gateway's monitoring port answers the same."""

from __future__ import annotations

from aiohttp import web

from cfv.gateway import keys
from cfv.gateway.limits import LIMITER
from cfv.monitor import Check, liveness, readiness
from cfv.store.database import ping

routes = web.RouteTableDef()


def checks(app: web.Application) -> dict[str, Check]:
    """What the gateway needs to serve: each dependency, by name."""
    return {
        "postgres": lambda: ping(app[keys.POOL]),
        "rabbitmq": app[keys.SUBMITTER].check_broker,
        "redis": app[LIMITER].ping,
    }


@routes.get("/livez")
@routes.get("/healthz")
async def livez(_: web.Request) -> web.Response:
    """The process runs and serves HTTP."""
    return liveness()


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Each dependency's state; 200 when all answer, else 503."""
    return await readiness(checks(request.app), request.app[keys.DRAINING])
