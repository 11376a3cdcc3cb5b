"""The gateway's aiohttp application, assembled from its parts (constructor injection)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp import web

from cfv.domain.webhooks import SecretBox
from cfv.gateway import (
    admin,
    events,
    faces,
    health,
    kantata,
    kantata_choices,
    kantata_sets,
    kantata_values,
    keys,
    openapi,
    plane,
    subjects,
    webhooks,
)
from cfv.gateway.auth import Authenticator
from cfv.gateway.errors import error_middleware
from cfv.gateway.limits import RateLimiter, guard_middleware
from cfv.gateway.limits import install as install_limits
from cfv.gateway.observe import install as install_observer
from cfv.gateway.observe import observe_middleware
from cfv.gateway.submit import Submitter
from cfv.settings import Settings
from cfv.store.listener import Listener


def create_app(settings: Settings, pool: asyncpg.Pool[Any], submitter: Submitter,
               limiter: RateLimiter | None = None, listener: Listener | None = None) -> web.Application:
    """The gateway's routes and middlewares over the given pool and submitter (and rate limiter: without one,
    the app makes its own over ``settings.redis_url``; and listener, to hear of credentials changed elsewhere).
    """
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[observe_middleware, error_middleware, guard_middleware])
    install_limits(app, settings, limiter)
    app[keys.SETTINGS] = settings
    app[keys.DRAINING] = asyncio.Event()
    install_observer(app)
    app[keys.POOL] = pool
    app[keys.SECRET_BOX] = SecretBox.from_setting(settings.secret_keys.get_secret_value())
    app[keys.SUBMITTER] = submitter
    app[keys.AUTHENTICATOR] = Authenticator(pool, listener)
    # The faces: each table declares its face (error shape, URL space) and which routes write values.
    faces.mount(app, kantata_values.table)
    faces.mount(app, kantata.table)
    faces.mount(app, kantata_choices.table)
    faces.mount(app, kantata_sets.table)
    app.add_routes(admin.routes)  # the routes of no face answer in cfv's own shape (Kantata's)
    faces.mount(app, plane.table)
    app.add_routes(subjects.routes)
    app.add_routes(health.routes)
    app.add_routes(events.routes)
    app.add_routes(webhooks.routes)
    openapi.install(app)  # last: it describes the routes above
    return app
