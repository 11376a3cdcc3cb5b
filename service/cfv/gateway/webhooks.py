"""The webhooks API (account administrators only): ``/api/v1/webhooks[/{id}]`` and a webhook's delivery attempts,
``/api/v1/webhooks/{id}/deliveries`` and ``.../deliveries/{delivery_id}/retry``. Answers are Kantata's format (see
:func:`cfv.gateway.kantata.listing`); a body may be the object itself or that object under ``webhook``.

The gateway only records webhooks: the ``cfv webhooks`` processes deliver (:mod:`cfv.webhooks`). A URL must be
http or https and its host must resolve to public addresses only (unless ``CFV_WEBHOOK_ALLOW_PRIVATE``): checked
here, answering 422 with the reason, and again at every delivery, since DNS answers change. The signing secret is
answered once, by the POST that makes it (or a PATCH that rotates it), never logged, and stored sealed with
``CFV_SECRET_KEYS`` (without a key, making or rotating one answers 503).
"""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from cfv_schemas.events import DEFINITION_EVENT_TYPES, EVENT_TYPES
from cfv_schemas.webhooks import DeliveryOut, WebhookCreate, WebhookOut, WebhookUpdate
from pydantic import BaseModel, ValidationError

from cfv.domain import webhooks as rules
from cfv.domain.fields import SUBJECT_TYPES
from cfv.gateway import keys
from cfv.gateway.auth import Principal, require_admin
from cfv.gateway.errors import ApiError, from_validation, json_response, not_found
from cfv.gateway.http import read_json_data
from cfv.gateway.kantata import int_id, listing, pagination
from cfv.store import webhooks as stored
from cfv.store.webhooks import Delivery, Webhook

routes = web.RouteTableDef()
WEBHOOKS = "webhooks"
DELIVERIES = "webhook_deliveries"
_RESOLVE_SECONDS = 5.0
M = TypeVar("M", bound=BaseModel)


# --- rendering ----------------------------------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def render(webhook: Webhook, *, secret: str | None = None) -> dict[str, Any]:
    """A webhook as answered; with its signing ``secret`` only where it was just made (its creation, a rotation)."""
    out = WebhookOut(id=str(webhook.id), url=webhook.url, description=webhook.description,
                     event_types=webhook.event_types, subject_types=webhook.subject_types,
                     custom_field_ids=webhook.custom_field_ids, created_by=str(webhook.created_by),
                     status="disabled" if webhook.disabled_at else "enabled",
                     disabled_at=_time(webhook.disabled_at), disabled_reason=webhook.disabled_reason,
                     position=webhook.cursor, consecutive_failures=webhook.consecutive_failures,
                     next_attempt_at=_time(webhook.next_attempt_at), created_at=webhook.created_at.isoformat(),
                     updated_at=webhook.updated_at.isoformat(), secret=secret)
    return out.model_dump(exclude=set() if secret is not None else {"secret"})


def render_delivery(delivery: Delivery) -> dict[str, Any]:
    """A delivery attempt as answered."""
    return DeliveryOut(id=str(delivery.id), webhook_id=str(delivery.webhook_id), position=delivery.position,
                       event_id=delivery.event_id, event_type=delivery.event_type,
                       status=delivery.status,  # the table's CHECK keeps it to the four
                       attempt=delivery.attempt, manual=delivery.manual, response_status=delivery.response_status,
                       error=delivery.error, duration_ms=delivery.duration_ms,
                       attempted_at=delivery.attempted_at.isoformat()).model_dump()


# --- checks -------------------------------------------------------------------------------------------------


def _admin(request: web.Request) -> Principal:
    principal: Principal = request[keys.PRINCIPAL]
    require_admin(principal)
    return principal


async def _body(request: web.Request, model: type[M]) -> M:
    data: Any = await read_json_data(request)
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("webhook"), dict):
        data = data["webhook"]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_validation(error) from None


def _invalid(field: str, message: str, **more: Any) -> ApiError:
    return ApiError(422, [{"type": "validation", "message": message, "field": field, **more}])


def _check_filters(event_types: list[str] | None, subject_types: list[str] | None) -> None:
    known = sorted(set(EVENT_TYPES.values()) | set(DEFINITION_EVENT_TYPES))  # value and definition events
    unknown = sorted(set(event_types or ()) - set(known))
    if unknown:
        raise _invalid("event_types", f"unknown event type(s) {', '.join(unknown)}", valid=known)
    unknown = sorted(set(subject_types or ()) - set(SUBJECT_TYPES))
    if unknown:
        raise _invalid("subject_types", f"unknown subject type(s) {', '.join(unknown)}", valid=list(SUBJECT_TYPES))


async def check_url(url: str, *, allow_private: bool) -> None:
    """422 unless ``url`` may receive webhooks: its form, and (unless ``allow_private``) every address its host
    resolves to now."""
    refusal = rules.url_refusal(url)
    if refusal is not None:
        raise _invalid("url", refusal)
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname
    assert host is not None
    literal = rules.literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            async with asyncio.timeout(_RESOLVE_SECONDS):
                found = await asyncio.get_running_loop().getaddrinfo(
                    host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            raise _invalid("url", f"the host {host} does not resolve", reason="unresolvable") from None
        addresses = [a for a in (rules.literal_address(str(info[4][0])) for info in found) if a is not None]
    for address in addresses:
        why = rules.address_refusal(address)
        if why is not None:
            # What a name resolves to inside the network is not told (it would map internal names); an address
            # given as such is named, since the caller knows it already.
            what = f"{address} is {why}" if literal is not None else f"the host {host} resolves to {why}"
            raise _invalid("url", f"{what}: webhooks are delivered to public addresses only",
                           reason="forbidden_address")


def _webhook_id(request: web.Request) -> int:
    return int_id(request, "webhook_id", "webhook")


def _new_secret(request: web.Request) -> tuple[str, str]:
    """A new signing secret, and its sealed form to store; 503 if this gateway has no key to seal it with."""
    box = request.app[keys.SECRET_BOX]
    if not box.can_seal:
        raise ApiError.one(503, "unavailable", "webhooks cannot be made or their secrets rotated here: this cfv has no "
                           "key to keep their signing secrets sealed with (an operator sets CFV_SECRET_KEYS; see "
                           "docs/operating.md)", headers={"Retry-After": "60"})
    secret = rules.new_secret()
    return secret, box.seal(secret)


async def _get(request: web.Request, principal: Principal) -> Webhook:
    async with request.app[keys.POOL].acquire() as connection:
        webhook = await stored.get(connection, workspace_id=principal.workspace_id, webhook_id=_webhook_id(request))
    if webhook is None:
        raise not_found("webhook")
    return webhook


# --- webhooks -----------------------------------------------------------------------------------------------


@routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    """Register a URL that receives the workspace's change events; the answer holds the signing secret once.

    The webhook delivers the events committed from now on, of the given types (and subject types and fields), that
    its creator may read, signed as Standard Webhooks says."""
    principal = _admin(request)
    spec = await _body(request, WebhookCreate)
    _check_filters(spec.event_types, spec.subject_types)
    await check_url(spec.url, allow_private=request.app[keys.SETTINGS].webhook_allow_private)
    secret, sealed = _new_secret(request)
    async with request.app[keys.POOL].acquire() as connection:
        webhook = await stored.create(connection, workspace_id=principal.workspace_id, created_by=principal.user_id,
                                      url=spec.url, description=spec.description, event_types=spec.event_types,
                                      subject_types=spec.subject_types, custom_field_ids=spec.custom_field_ids,
                                      secret=sealed)
    return json_response(listing(WEBHOOKS, [render(webhook, secret=secret)]), 201)


@routes.get("/api/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    """The workspace's webhooks, paginated (never their secrets)."""
    principal = _admin(request)
    page, per_page = pagination(request)
    async with request.app[keys.POOL].acquire() as connection:
        found, total = await stored.list_(connection, workspace_id=principal.workspace_id, limit=per_page,
                                          offset=(page - 1) * per_page)
    return json_response(listing(WEBHOOKS, [render(w) for w in found], total=total, page=page, per_page=per_page))


@routes.get("/api/v1/webhooks/{webhook_id}")
async def get_webhook(request: web.Request) -> web.Response:
    """One webhook: its definition, whether it is enabled (or why not) and how far it delivered."""
    principal = _admin(request)
    return json_response(listing(WEBHOOKS, [render(await _get(request, principal))]))


@routes.patch("/api/v1/webhooks/{webhook_id}")
async def update_webhook(request: web.Request) -> web.Response:
    """Change a webhook; ``enabled: true`` re-enables it where it stopped, ``rotate_secret: true`` makes a new secret
    (in the answer, once: the old one stops signing at once)."""
    principal = _admin(request)
    webhook_id = _webhook_id(request)
    changes = await _body(request, WebhookUpdate)
    given = changes.model_fields_set
    if not given:
        raise ApiError.one(400, "validation", "give something to change: url, event_types, subject_types, "
                           "custom_field_ids, description, enabled or rotate_secret")
    for name in ("url", "event_types", "enabled", "rotate_secret"):
        if name in given and getattr(changes, name) is None:
            raise _invalid(name, f"{name} cannot be null")
    _check_filters(changes.event_types, changes.subject_types)
    if changes.url is not None:
        await check_url(changes.url, allow_private=request.app[keys.SETTINGS].webhook_allow_private)
    secret, sealed = _new_secret(request) if changes.rotate_secret else (None, None)
    async with request.app[keys.POOL].acquire() as connection, connection.transaction():
        webhook = await stored.get(connection, workspace_id=principal.workspace_id, webhook_id=webhook_id)
        if webhook is None:
            raise not_found("webhook")

        def chosen(name: str) -> Any:
            return getattr(changes, name) if name in given else getattr(webhook, name)

        updated = await stored.update(connection, workspace_id=principal.workspace_id, webhook_id=webhook_id,
                                      url=chosen("url"), description=chosen("description"),
                                      event_types=chosen("event_types"), subject_types=chosen("subject_types"),
                                      custom_field_ids=chosen("custom_field_ids"),
                                      secret=sealed or webhook.secret,
                                      enabled=changes.enabled)
    if updated is None:
        raise not_found("webhook")
    return json_response(listing(WEBHOOKS, [render(updated, secret=secret)]))


@routes.delete("/api/v1/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    """Delete a webhook and the record of its deliveries; nothing more is sent to it."""
    principal = _admin(request)
    webhook_id = _webhook_id(request)
    async with request.app[keys.POOL].acquire() as connection:
        if not await stored.delete(connection, workspace_id=principal.workspace_id, webhook_id=webhook_id):
            raise not_found("webhook")
    return web.Response(status=204)


# --- deliveries ---------------------------------------------------------------------------------------------


@routes.get("/api/v1/webhooks/{webhook_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """A webhook's delivery attempts, newest first, paginated: status, time, the receiver's answer, the error."""
    principal = _admin(request)
    page, per_page = pagination(request)
    webhook = await _get(request, principal)
    async with request.app[keys.POOL].acquire() as connection:
        found, total = await stored.deliveries(connection, webhook_id=webhook.id, limit=per_page,
                                               offset=(page - 1) * per_page)
    return json_response(listing(DELIVERIES, [render_delivery(d) for d in found], total=total, page=page,
                                 per_page=per_page))


@routes.post("/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
async def retry_delivery(request: web.Request) -> web.Response:
    """Send an attempt's event again (202: a delivery process sends it shortly, as a new attempt, ``manual``).

    A retry is sent apart from the webhook's order, even to a disabled webhook; it does not move its position."""
    principal = _admin(request)
    webhook = await _get(request, principal)
    delivery_id = int_id(request, "delivery_id", "delivery")
    async with request.app[keys.POOL].acquire() as connection:
        retry = await stored.request_retry(connection, webhook_id=webhook.id, delivery_id=delivery_id)
    if retry is None:
        raise not_found("delivery")
    return json_response(listing(DELIVERIES, [render_delivery(retry)]), 202)
