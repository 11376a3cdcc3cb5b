"""Typed keys of what the gateway's application and requests carry."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from cfv.domain.webhooks import SecretBox
from cfv.settings import Settings

if TYPE_CHECKING:
    from cfv.gateway.auth import Authenticator, Principal
    from cfv.gateway.limits import Budget
    from cfv.gateway.submit import Submitter

SETTINGS = web.AppKey("settings", Settings)
DRAINING = web.AppKey("draining", asyncio.Event)  # set once the gateway is stopping: /readyz answers 503
POOL = web.AppKey("pool", asyncpg.Pool)
SECRET_BOX = web.AppKey("secret_box", SecretBox)  # seals webhooks' signing secrets (CFV_SECRET_KEYS)
SUBMITTER: web.AppKey[Submitter] = web.AppKey("submitter")
AUTHENTICATOR: web.AppKey[Authenticator] = web.AppKey("authenticator")
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
REQUEST_ID = web.RequestKey("request_id", str)  # see cfv.gateway.observe
BUDGET: web.RequestKey[Budget] = web.RequestKey("rate_limit_budget")  # the budget a request was counted against
