"""The replay API: ``GET /api/v1/events`` reads a workspace's event log from a position, so a consumer that was
down, or joins late, catches up (then follows the exchange, or keeps polling here).

Events of fields the caller may not read are left out (each field's read_access, as for value reads; for the
definition events of a field see ``events_page`` in store/sql/events.sql): positions then skip. A position older
than what the log keeps (``CFV_EVENT_RETENTION``) answers 410 with the oldest kept.
"""

from __future__ import annotations

from aiohttp import web
from cfv_schemas.events import DEFINITION_EVENT_TYPES, EVENT_TYPES, EventsQuery
from pydantic import ValidationError

from cfv.domain.fields import SUBJECT_TYPES
from cfv.gateway import keys
from cfv.gateway.errors import ApiError, from_validation
from cfv.store import events

routes = web.RouteTableDef()

_KNOWN_TYPES = frozenset(EVENT_TYPES.values()) | frozenset(DEFINITION_EVENT_TYPES)


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    """``{"events": [CloudEvent, ...], "next_after": POSITION}``: the events after ``after``, in position order."""
    try:
        asked = EventsQuery.model_validate(dict(request.query))
    except ValidationError as error:
        raise from_validation(error) from None
    types = _listed(asked.type, "type")
    unknown = sorted(set(types or ()) - _KNOWN_TYPES)
    if unknown:
        raise ApiError.one(400, "validation", f"unknown event type(s) {', '.join(unknown)}; known: "
                           f"{', '.join(sorted(_KNOWN_TYPES))}", "type")
    if asked.subject_type is not None and asked.subject_type not in SUBJECT_TYPES:
        raise ApiError.one(400, "validation", f"subject_type must be one of {', '.join(SUBJECT_TYPES)}",
                           "subject_type")
    field_ids = _ids(asked.custom_field_id)
    principal = request[keys.PRINCIPAL]
    async with request.app[keys.POOL].acquire() as connection, connection.transaction(isolation="repeatable_read"):
        kept = await events.bounds(connection, workspace_id=principal.workspace_id)
        after = asked.after
        if after is None:
            after = (kept.oldest or 1) - 1
        elif kept.oldest is not None and after + 1 < kept.oldest:
            raise ApiError(410, [{"type": "gone", "message": (
                f"the events after position {after} are no longer kept (the log keeps "
                f"{request.app[keys.SETTINGS].event_retention:g} s); the oldest kept is {kept.oldest}: read from "
                f"after={kept.oldest - 1}, and take the current values for what came before"),
                "field": "after", "oldest_position": kept.oldest}])
        page = await events.read_page(connection, workspace_id=principal.workspace_id, after=after,
                                      limit=asked.limit, user_id=principal.user_id,
                                      account_role=principal.account_role, types=types,
                                      subject_type=asked.subject_type, field_ids=field_ids)
    # The events are sent as the log keeps them: JSON text, not decoded and encoded again.
    body = '{"events":[' + ",".join(page.events) + '],"next_after":' + str(page.next_after) + "}"
    return web.Response(text=body, content_type="application/json")


def _listed(raw: str | None, field: str) -> list[str] | None:
    if raw is None:
        return None
    items = [part.strip() for part in raw.split(",") if part.strip()]
    if not items:
        raise ApiError.one(400, "validation", f"{field} lists nothing", field)
    return items


def _ids(raw: str | None) -> list[int] | None:
    items = _listed(raw, "custom_field_id")
    if items is None:
        return None
    try:
        ids = [int(item) for item in items]
    except ValueError:
        raise ApiError.one(400, "validation", "custom_field_id is a comma-separated list of field ids",
                           "custom_field_id") from None
    if any(not 0 < i < 2**63 for i in ids):
        raise ApiError.one(400, "validation", "custom_field_id lists ids out of range", "custom_field_id")
    return ids
