"""The Kantata face's reads and changes of existing values: list, get (with an ETag), history, update and
delete by id.

Reads come from Postgres directly. Updates and deletes are core commands like any write (gateway → broker →
worker), so they are validated, ordered, recorded and announced the same way; an id only says which value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from cfv_schemas.commands import MAX_BULK, CommandItem
from cfv_schemas.kantata import UpdateValuesIn, ValueUpdateIn

from cfv.domain.fields import CHOICE_TYPES, SubjectType
from cfv.domain.values import InvalidValue, canonical_subject_id
from cfv.gateway import faces, keys
from cfv.gateway.errors import ApiError, json_response, not_found
from cfv.gateway.http import accepted, failure_status, read_json, read_json_data, wants_async
from cfv.gateway.kantata import KANTATA, VALUES, listing, pagination, render_fields, render_value
from cfv.gateway.observe import request_id_of
from cfv.store import accounts
from cfv.store import fields as store_fields
from cfv.store import values as stored_values
from cfv.store.values import Reader, ValueFilter

routes = web.RouteTableDef()
Row = dict[str, Any]
VALUE_PATH = r"/api/v1/custom_field_values/{value_id:\d{1,18}}"  # longer ids name nothing (bigint)
table = faces.Table(KANTATA, routes, writes=frozenset({"/api/v1/custom_field_values", VALUE_PATH}))  # PUT, DELETE

INCLUDES = frozenset({"custom_field", "selected_choices", "setter", "subject"})
ORDERS = {"updated_at": "updated_at", "created_at": "updated_at", "id": "id"}  # a value is created when set
SUBJECT_KEYS = {
    SubjectType.ESTIMATE: "estimates", SubjectType.STORY: "stories", SubjectType.USER: "users",
    SubjectType.WORKSPACE: "workspaces", SubjectType.WORKSPACE_GROUP: "workspace_groups",
    SubjectType.RESOURCE: "resources", SubjectType.WORK_ITEM: "work_items",
}
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def _workspace_id(request: web.Request) -> int:
    return request[keys.PRINCIPAL].workspace_id


def _reader(request: web.Request) -> Reader:
    """The reader's user and account role: value queries return only what they may see."""
    principal = request[keys.PRINCIPAL]
    return Reader(principal.user_id, principal.account_role)


def _pool(request: web.Request) -> asyncpg.Pool[Any]:
    return request.app[keys.POOL]


def _bad(message: str, field: str | None = None) -> ApiError:
    return ApiError.one(400, "validation", message, field)


def _value(row: asyncpg.Record) -> Row:
    """A stored value row in the face-neutral form that :func:`render_value` takes."""
    value = dict(row)
    value["created_at"] = row["created_at"].isoformat()
    value["operation_id"] = str(row["operation_id"])
    return value


def etag(version: int) -> str:
    """The ETag of a value at ``version`` (its sequence)."""
    return f'"{version}"'


def _if_match(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    match = _ETAG.match(raw.strip())
    if match is None:
        raise _bad('If-Match takes the ETag of a value, e.g. "3"', "If-Match")
    return int(match.group(1))


# --- reads --------------------------------------------------------------------------------------------


def _subject_type(raw: str | None) -> SubjectType:
    if not raw:
        raise _bad("subject_type is required", "subject_type")
    try:
        return SubjectType(raw)
    except ValueError:
        raise _bad(f"subject_type must be one of {', '.join(SubjectType)}", "subject_type") from None


def _subject_ids(subject_type: SubjectType, raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    try:
        return [canonical_subject_id(subject_type, part.strip()) for part in raw.split(",")]
    except InvalidValue as error:
        raise _bad(str(error), "with_subject_id") from None


def _ids(raw: str | None, field: str) -> list[int] | None:
    if raw is None:
        return None
    parts = [part.strip() for part in raw.split(",")]
    if not all(part.isascii() and part.isdigit() and len(part) <= 18 for part in parts):
        raise _bad(f"{field} is a comma-separated list of ids", field)
    return [int(part) for part in parts]


def _moment(raw: str | None, field: str) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(f"{field} is an ISO 8601 date and time", field) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # within an hour or so of year 1 or 9999: as good as the end of time it is near
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


def _order(raw: str | None) -> tuple[str, bool]:
    field, _, direction = (raw or "updated_at:asc").partition(":")
    if field not in ORDERS or direction not in ("", "asc", "desc"):
        raise _bad(f"order is FIELD:asc or FIELD:desc, FIELD one of {', '.join(ORDERS)}", "order")
    return ORDERS[field], direction == "desc"


def _includes(raw: str | None) -> set[str]:
    includes = {part.strip() for part in (raw or "").split(",") if part.strip()}
    unknown = includes - INCLUDES
    if unknown:
        raise _bad(f"include takes {', '.join(sorted(INCLUDES))}; not {', '.join(sorted(unknown))}", "include")
    return includes


async def _add_includes(body: dict[str, Any], includes: set[str], values: list[Row], request: web.Request) -> None:
    """Fill the top-level keys the client asked for, from the values answered."""
    pool = _pool(request)
    if "custom_field" in includes:
        field_rows = await store_fields.fields_by_ids(pool, workspace_id=_workspace_id(request),
                                                      field_ids=list({v["custom_field_id"] for v in values}))
        body["custom_fields"] = {f["id"]: f for f in await render_fields(pool, field_rows)}
    if "selected_choices" in includes:
        choice_ids = list({c for v in values if v["value_type"] in CHOICE_TYPES for c in v["value"]})
        body["custom_field_choices"] = {
            str(c["id"]): {"id": str(c["id"]), "custom_field_id": str(c["custom_field_id"]), "label": c["label"],
                           "position": c["position"]}
            for c in await store_fields.choices_by_ids(pool, choice_ids=choice_ids)}
    if "setter" in includes:  # a setter is an API key ("key:<id>"), of a user
        key_ids = {int(v["setter"].removeprefix("key:")) for v in values
                   if v["setter"].startswith("key:") and v["setter"][4:].isdigit()}
        found = await accounts.key_owners(pool, workspace_id=_workspace_id(request), key_ids=list(key_ids))
        owners = {f"key:{r['key_id']}": r for r in found}
        body.setdefault("users", {}).update({v["setter"]: _setter(v["setter"], owners.get(v["setter"]))
                                             for v in values})
    if "subject" in includes:
        for v in values:
            subject_key = SUBJECT_KEYS[SubjectType(v["subject_type"])]
            subject_id = str(v["subject_id"])
            body.setdefault(subject_key, {})[subject_id] = {"id": subject_id, "type": v["subject_type"]}


def _setter(setter: str, owner: asyncpg.Record | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": setter, "kind": "api_key"}
    if owner is not None:
        out.update(user_id=str(owner["user_id"]), user_kind=owner["kind"], name=owner["name"])
    return out


@routes.get("/api/v1/custom_field_values")
async def list_values(request: web.Request) -> web.Response:
    """Current values of one subject type, filtered, ordered and paginated, with the includes asked for.

    ``meta.as_of`` says when the page was read; sending it back as ``as_of`` with the next pages reads them
    as the values stood then, so writes made meanwhile neither repeat nor hide a value between pages.
    """
    q = request.query
    subject_type = _subject_type(q.get("subject_type"))
    subject_ids = _subject_ids(subject_type, q.get("with_subject_id"))
    field_ids = _ids(q.get("with_custom_field_id"), "with_custom_field_id")
    after, before = _moment(q.get("updated_after"), "updated_after"), _moment(q.get("updated_before"),
                                                                               "updated_before")
    order, descending = _order(q.get("order"))
    includes = _includes(q.get("include"))
    page, per_page = pagination(request)
    as_of = _moment(q.get("as_of"), "as_of")
    where = ValueFilter(_workspace_id(request), subject_type.value, subject_ids, field_ids, after, before, order,
                        descending)
    reader = _reader(request)
    async with _pool(request).acquire() as connection, connection.transaction(isolation="repeatable_read"):
        read_at = await stored_values.read_time(connection)
        rows = await stored_values.list_current(connection, where=where, reader=reader, limit=per_page,
                                                offset=(page - 1) * per_page, as_of=as_of)
        if rows:
            total = rows[0]["total"]
        else:  # past the last page: count what there is
            first = await stored_values.list_current(connection, where=where, reader=reader, limit=1, offset=0,
                                                     as_of=as_of)
            total = first[0]["total"] if first else 0
    values = [_value(r) for r in rows]
    body = listing(VALUES, [render_value(v) for v in values], total=total, page=page, per_page=per_page)
    body["meta"]["as_of"] = (as_of or read_at).isoformat()
    await _add_includes(body, includes, values, request)
    return json_response(body)


@routes.get("/api/v1/custom_field_values/history")
async def value_history(request: web.Request) -> web.Response:
    """Every version of one value, oldest first: who set it, when, by which operation (deletes too)."""
    q = request.query
    subject_type = _subject_type(q.get("subject_type"))
    subject_ids = _subject_ids(subject_type, q.get("subject_id"))
    field_ids = _ids(q.get("custom_field_id"), "custom_field_id")
    if not subject_ids or len(subject_ids) != 1 or not field_ids or len(field_ids) != 1:
        raise _bad("history takes one subject_type, one subject_id and one custom_field_id")
    pool = _pool(request)
    if not await store_fields.fields_by_ids(pool, workspace_id=_workspace_id(request), field_ids=field_ids):
        raise not_found("custom field")
    rows = await stored_values.history(pool, workspace_id=_workspace_id(request), subject_type=subject_type.value,
                                       subject_id=subject_ids[0], field_id=field_ids[0], reader=_reader(request))
    versions = []
    previous: Any = None
    for row in rows:
        version = render_value(_value(row))
        version["change"] = ("deleted" if row["value"] is None else
                             "created" if previous is None else "replaced")
        previous = row["value"]
        versions.append(version)
    return json_response(listing("custom_field_value_versions", versions))


@routes.get(VALUE_PATH)
async def get_value(request: web.Request) -> web.Response:
    """One current value, with its version as ``ETag``."""
    [value] = await _current(request, [int(request.match_info["value_id"])], single=True)
    body = listing(VALUES, [render_value(value)])
    await _add_includes(body, _includes(request.query.get("include")), [value], request)
    return json_response(body, headers={"ETag": etag(value["sequence"])})


async def _current(request: web.Request, ids: list[int], *, single: bool = False) -> list[Row]:
    """The current values of ``ids``, in order; 404 naming each id that is not a current value here."""
    found = await stored_values.current_by_ids(_pool(request), workspace_id=_workspace_id(request), ids=ids,
                                               reader=_reader(request))
    rows = {r["id"]: _value(r) for r in found}
    missing = [(index, value_id) for index, value_id in enumerate(ids) if value_id not in rows]
    if missing:
        if single:
            raise not_found("custom field value")
        raise ApiError(404, [{"type": "not_found", "message": f"custom field value {value_id} not found",
                              "field": "id", "index": index, "id": str(value_id)} for index, value_id in missing])
    return [rows[value_id] for value_id in ids]


# --- changes ------------------------------------------------------------------------------------------


def _change(value: Row, *, op: str, update: ValueUpdateIn | None = None,
            expected_version: int | None = None) -> CommandItem:
    """A core item changing the existing ``value``."""
    options: dict[str, Any] = {"expected_version": expected_version}
    if update is not None:
        options = {**update.change_options(), "value": update.value, "must_exist": True}
        if update.expected_version is None:  # the item's own expected_version wins over If-Match
            options["expected_version"] = expected_version
    return CommandItem(subject_type=value["subject_type"], subject_id=value["subject_id"],
                       custom_field_id=value["custom_field_id"], op=op, **options)


async def _submit(request: web.Request, items: list[CommandItem], ids: list[int], *,
                  deleting: bool) -> web.Response:
    respond_async = wants_async(request)
    submitted = await request.app[keys.SUBMITTER].submit(
        request[keys.PRINCIPAL], items, idempotency_key=request.headers.get("Idempotency-Key"),
        request_id=request_id_of(request),
        wait=not respond_async)
    if submitted.outcome is None:
        return accepted(submitted, respond_async=respond_async)
    outcome = submitted.outcome
    if outcome["status"] == "failed":
        errors = [{**e, "id": str(ids[e["index"]])} if e.get("index") is not None else e
                  for e in outcome["errors"]]
        raise ApiError(failure_status(outcome), errors)
    if deleting:
        return web.Response(status=204)
    values = outcome["values"]
    answer = json_response(listing(VALUES, [render_value(v) for v in values]))
    if len(values) == 1:
        answer.headers["ETag"] = etag(values[0]["sequence"])
    return answer


@routes.put(VALUE_PATH)
async def update_value(request: web.Request) -> web.Response:
    """Give an existing value a new value (a new id, its field's validation and replace semantics)."""
    value_id = int(request.match_info["value_id"])
    body = await read_json(request, UpdateValuesIn)
    if body.custom_field_value is None:
        raise _bad("send custom_field_value to update one value; PUT /api/v1/custom_field_values for several")
    [value] = await _current(request, [value_id], single=True)
    item = _change(value, op="write", update=body.custom_field_value, expected_version=_if_match(request))
    return await _submit(request, [item], [value_id], deleting=False)


@routes.put("/api/v1/custom_field_values")
async def update_values(request: web.Request) -> web.Response:
    """Update up to 100 existing values, all or nothing; each names its ``id``."""
    body = await read_json(request, UpdateValuesIn)
    if body.custom_field_values is None:
        raise _bad("send custom_field_values, each with its id", "custom_field_values")
    ids = [_value_id(update.id, f"custom_field_values.{index}.id")
           for index, update in enumerate(body.custom_field_values)]
    values = await _current(request, ids)
    items = [_change(value, op="write", update=update)
             for value, update in zip(values, body.custom_field_values, strict=True)]
    return await _submit(request, items, ids, deleting=False)


def _value_id(raw: int | str, field: str) -> int:
    text = str(raw)
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise _bad("a value id is a positive integer", field)
    return int(text)


@routes.delete(VALUE_PATH)
async def delete_value(request: web.Request) -> web.Response:
    """Delete one value (``If-Match`` to delete only the version read)."""
    value_id = int(request.match_info["value_id"])
    [value] = await _current(request, [value_id], single=True)
    item = _change(value, op="delete", expected_version=_if_match(request))
    return await _submit(request, [item], [value_id], deleting=True)


@routes.delete("/api/v1/custom_field_values")
async def delete_values(request: web.Request) -> web.Response:
    """Delete up to 100 values named by ``ids=1,2,3`` (query or body), all or nothing."""
    raw = request.query.get("ids")
    if raw is None and request.can_read_body:
        body = await read_json_data(request)
        raw = body.get("ids") if isinstance(body, dict) else None
    ids = list(dict.fromkeys(_ids(str(raw) if raw is not None else None, "ids") or []))
    if not ids:
        raise _bad("name the values to delete: ids=1,2,3", "ids")
    if len(ids) > MAX_BULK:
        raise _bad(f"delete at most {MAX_BULK} values at once", "ids")
    values = await _current(request, ids)
    return await _submit(request, [_change(v, op="delete") for v in values], ids, deleting=True)

