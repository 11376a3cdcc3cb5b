"""The administration API: users, their project memberships and their API keys (account administrators only).

``/api/v1/users``, ``/api/v1/users/{id}``, ``/api/v1/users/{id}/memberships[/{project}]``,
``/api/v1/users/{id}/api_keys`` and ``/api/v1/api_keys[/{id}]``. Answers are Kantata's format (see
:func:`cfv.gateway.kantata.listing`). A body may be the object itself or that object under its singular key
(``{"user": {...}}``, ``{"membership": {...}}``, ``{"api_key": {...}}``).

Every endpoint refuses (403) a caller who is not an account administrator, before it looks at anything else;
ids of other workspaces answer 404 exactly as unknown ones do. Every change runs in a transaction that first
takes the workspace's lock, the one the worker holds while it applies a batch and re-reads keys and roles in,
and checks the caller again under it: so a change that returned has taken effect for every later write, and
waited for the batches in flight. After a change the gateway forgets its cached principals, so a revoked key
(or lowered role) stops working here at once; other gateways forget within seconds, and their writes are
refused by the worker meanwhile.

Statuses: 400 for a body that is not JSON or does not have the expected shape, 422 for a value that is not
valid (a role or permission name, an email address, a project, a time), 409 for a change that clashes with
what exists (a duplicate email address or service-account name, the last administrator, a deactivated user's
new key, a revoked key's expiry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from cfv_schemas.admin import (
    KeyCreate,
    KeyOut,
    KeyUpdate,
    MembershipOut,
    MembershipPut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from pydantic import BaseModel, ValidationError

from cfv.gateway import keys
from cfv.gateway.auth import Principal, require_admin
from cfv.gateway.errors import ApiError, from_validation, json_response, not_found
from cfv.gateway.http import read_body, read_json_data
from cfv.gateway.kantata import int_id, listing, pagination
from cfv.store import accounts
from cfv.store.accounts import AccountError, IssuedKey, KeyInfo, Membership, User
from cfv.store.database import Connection

routes = web.RouteTableDef()
USERS = "users"
MEMBERSHIPS = "memberships"
API_KEYS = "api_keys"
_STATUS = {"validation": 422, "conflict": 409, "not_found": 404}
M = TypeVar("M", bound=BaseModel)

# --- rendering ----------------------------------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def render_user(user: User) -> dict[str, Any]:
    """A user in Kantata's form."""
    return UserOut(id=str(user.id), uuid=str(user.uuid), kind=user.kind, name=user.name,
                   email=user.email, account_role=user.account_role, created_at=_at(user.created_at),
                   updated_at=_at(user.updated_at), deactivated_at=_time(user.deactivated_at)).model_dump()


def render_membership(membership: Membership) -> dict[str, Any]:
    """A membership; its id is its project (unique among one user's memberships)."""
    return MembershipOut(id=membership.project, user_id=str(membership.user_id), project=membership.project,
                         permission=membership.permission, created_at=_at(membership.created_at),
                         updated_at=_at(membership.updated_at)).model_dump()


def render_key(key: KeyInfo) -> dict[str, Any]:
    """A key without its secret (which cfv does not have) or hash."""
    return KeyOut(id=str(key.id), prefix=key.prefix, name=key.name, user_id=str(key.user_id),
                  created_at=_at(key.created_at), expires_at=_time(key.expires_at),
                  revoked_at=_time(key.revoked_at), status=key.status()).model_dump(exclude={"key"})


def render_issued(key: IssuedKey) -> dict[str, Any]:
    """A key just made, with its secret: the only time it is shown."""
    return KeyOut(id=str(key.id), key=key.secret, prefix=key.prefix, name=key.name, user_id=str(key.user_id),
                  created_at=_at(key.created_at), expires_at=_time(key.expires_at), revoked_at=None,
                  status="active").model_dump()


def _at(moment: datetime) -> str:
    return moment.isoformat()


# --- plumbing -----------------------------------------------------------------------------------------------


def _admin(request: web.Request) -> Principal:
    principal = request[keys.PRINCIPAL]
    require_admin(principal)
    return principal


def _api_error(error: AccountError) -> ApiError:
    body: dict[str, Any] = {"type": error.kind, "message": error.message, "field": error.field}
    if error.valid is not None:
        body["valid"] = list(error.valid)
    return ApiError(_STATUS[error.kind], [body])


@asynccontextmanager
async def _reading(request: web.Request) -> AsyncIterator[Connection]:
    """A connection for reads, turning account errors into answers."""
    async with request.app[keys.POOL].acquire() as connection:
        try:
            yield connection
        except AccountError as error:
            raise _api_error(error) from None


@asynccontextmanager
async def _changing(request: web.Request, principal: Principal) -> AsyncIterator[Connection]:
    """A transaction holding the workspace's lock, in which the caller is still a valid administrator's key;
    once it commits, this gateway forgets its cached principals."""
    async with request.app[keys.POOL].acquire() as connection:
        try:
            async with accounts.locked(connection, principal.workspace_id):
                caller = await accounts.admin_caller(connection, key_id=principal.key_id,
                                                     workspace_id=principal.workspace_id)
                if caller is None or not caller["valid"]:
                    raise ApiError.one(401, "authentication", "the API key was revoked or has expired")
                if not caller["admin"]:
                    raise ApiError.one(403, "forbidden", "only account administrators may do this")
                yield connection
        except AccountError as error:
            raise _api_error(error) from None
    request.app[keys.AUTHENTICATOR].forget()


async def _body(request: web.Request, model: type[M], wrapper: str, *, empty: bool = False) -> M:
    """The body as ``model``, bare or under ``wrapper``; an empty body is ``{}`` if ``empty``."""
    data: Any = {} if empty and not (await read_body(request)).strip() else await read_json_data(request)
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get(wrapper), dict):
        data = data[wrapper]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_validation(error) from None


def _user_id(request: web.Request) -> int:
    return int_id(request, "user_id", "user")


def _key_id(request: web.Request) -> int:
    return int_id(request, "key_id", "API key")


def _expiry(raw: str, *, future: bool) -> datetime:
    try:
        moment = accounts.parse_datetime(raw, "expires_at")
        return accounts.check_future(moment, field="expires_at") if future else moment
    except AccountError as error:
        raise _api_error(error) from None


# --- users --------------------------------------------------------------------------------------------------


@routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    """The workspace's users (people and service accounts, deactivated ones too), paginated."""
    principal = _admin(request)
    page, per_page = pagination(request)
    async with _reading(request) as connection:
        users = await accounts.list_users(connection, principal.workspace_id, per_page, (page - 1) * per_page)
        total = await accounts.count_users(connection, principal.workspace_id)
    return json_response(listing(USERS, [render_user(u) for u in users], total=total, page=page,
                                 per_page=per_page))


@routes.post("/api/v1/users")
async def create_user(request: web.Request) -> web.Response:
    """Add a person or a service account with an account role."""
    principal = _admin(request)
    spec = await _body(request, UserCreate, "user")
    async with _changing(request, principal) as connection:
        user = await accounts.create_user(connection, principal.workspace_id, name=spec.name,
                                          account_role=spec.account_role, kind=spec.kind, email=spec.email)
    return json_response(listing(USERS, [render_user(user)]), 201)


@routes.get("/api/v1/users/{user_id}")
async def get_user(request: web.Request) -> web.Response:
    """One user."""
    principal = _admin(request)
    user_id = _user_id(request)
    async with _reading(request) as connection:
        user = await accounts.require_user(connection, principal.workspace_id, user_id)
    return json_response(listing(USERS, [render_user(user)]))


@routes.patch("/api/v1/users/{user_id}")
async def update_user(request: web.Request) -> web.Response:
    """Change a user's name, email address or account role; ``active`` deactivates or reactivates it."""
    principal = _admin(request)
    user_id = _user_id(request)
    changes = await _body(request, UserUpdate, "user")
    given = changes.model_fields_set
    for name in ("name", "account_role", "active"):
        if name in given and getattr(changes, name) is None:
            raise ApiError.one(422, "validation", f"{name} cannot be null", name)
    async with _changing(request, principal) as connection:
        user = await accounts.update_user(connection, principal.workspace_id, user_id, name=changes.name,
                                          email=changes.email, clear_email="email" in given and changes.email is None,
                                          account_role=changes.account_role, active=changes.active)
    return json_response(listing(USERS, [render_user(user)]))


@routes.delete("/api/v1/users/{user_id}")
async def deactivate_user(request: web.Request) -> web.Response:
    """Deactivate a user: its keys stop working at once (they work again if it is reactivated). Users are never
    deleted, since values and events name their keys."""
    principal = _admin(request)
    user_id = _user_id(request)
    async with _changing(request, principal) as connection:
        await accounts.update_user(connection, principal.workspace_id, user_id, active=False)
    return web.Response(status=204)


# --- memberships --------------------------------------------------------------------------------------------


@routes.get("/api/v1/users/{user_id}/memberships")
async def list_memberships(request: web.Request) -> web.Response:
    """A user's project memberships, paginated."""
    principal = _admin(request)
    user_id = _user_id(request)
    page, per_page = pagination(request)
    async with _reading(request) as connection:
        await accounts.require_user(connection, principal.workspace_id, user_id)
        found = await accounts.list_memberships(connection, principal.workspace_id, user_id, per_page,
                                                (page - 1) * per_page)
        total = await accounts.count_memberships(connection, principal.workspace_id, user_id)
    return json_response(listing(MEMBERSHIPS, [render_membership(m) for m in found], total=total, page=page,
                                 per_page=per_page))


@routes.put("/api/v1/users/{user_id}/memberships/{project}")
async def put_membership(request: web.Request) -> web.Response:
    """Make a user a member of a project with a permission, or change the permission (201 if new)."""
    principal = _admin(request)
    user_id = _user_id(request)
    spec = await _body(request, MembershipPut, "membership")
    async with _changing(request, principal) as connection:
        membership, created = await accounts.set_membership(connection, principal.workspace_id, user_id,
                                                            request.match_info["project"], spec.permission)
    return json_response(listing(MEMBERSHIPS, [render_membership(membership)]), 201 if created else 200)


@routes.delete("/api/v1/users/{user_id}/memberships/{project}")
async def delete_membership(request: web.Request) -> web.Response:
    """End a user's membership of a project."""
    principal = _admin(request)
    user_id = _user_id(request)
    async with _changing(request, principal) as connection:
        await accounts.require_user(connection, principal.workspace_id, user_id)
        if not await accounts.delete_membership(connection, principal.workspace_id, user_id,
                                                request.match_info["project"]):
            raise not_found("membership")
    return web.Response(status=204)


# --- keys ---------------------------------------------------------------------------------------------------


@routes.post("/api/v1/users/{user_id}/api_keys")
async def create_key(request: web.Request) -> web.Response:
    """Make a key for a user. The answer holds the secret (``key``): the only time it is shown."""
    principal = _admin(request)
    user_id = _user_id(request)
    spec = await _body(request, KeyCreate, "api_key", empty=True)
    if spec.expires_at is not None and spec.expires_in_days is not None:
        raise ApiError.one(422, "validation", "give expires_at or expires_in_days, not both", "expires_at")
    expires_at = None
    if spec.expires_at is not None:
        expires_at = _expiry(spec.expires_at, future=True)
    elif spec.expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=spec.expires_in_days)
    async with _changing(request, principal) as connection:
        issued = await accounts.issue_key(connection, principal.workspace_id, user_id=user_id, name=spec.name,
                                          expires_at=expires_at)
    return json_response(listing(API_KEYS, [render_issued(issued)]), 201)


@routes.get("/api/v1/api_keys")
async def list_keys(request: web.Request) -> web.Response:
    """The workspace's keys (``?user_id=``: one user's), revoked and expired ones too, paginated; never a
    secret."""
    principal = _admin(request)
    page, per_page = pagination(request)
    raw = request.query.get("user_id")
    user_id = None
    if raw is not None:
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise ApiError.one(400, "validation", "user_id is a user's id", "user_id")
        user_id = int(raw)
    async with _reading(request) as connection:
        if user_id is not None:
            await accounts.require_user(connection, principal.workspace_id, user_id)
        found = await accounts.list_keys(connection, principal.workspace_id, user_id=user_id, limit=per_page,
                                         offset=(page - 1) * per_page)
        total = await accounts.count_keys(connection, principal.workspace_id, user_id=user_id)
    return json_response(listing(API_KEYS, [render_key(k) for k in found], total=total, page=page,
                                 per_page=per_page))


@routes.get("/api/v1/api_keys/{key_id}")
async def get_key(request: web.Request) -> web.Response:
    """One key, without its secret."""
    principal = _admin(request)
    key_id = _key_id(request)
    async with _reading(request) as connection:
        key = await accounts.get_key(connection, principal.workspace_id, key_id)
    if key is None:
        raise not_found("API key")
    return json_response(listing(API_KEYS, [render_key(key)]))


@routes.patch("/api/v1/api_keys/{key_id}")
async def update_key(request: web.Request) -> web.Response:
    """Change when a key expires (``expires_at``: null never; a time past expires it now) or its name."""
    principal = _admin(request)
    key_id = _key_id(request)
    changes = await _body(request, KeyUpdate, "api_key")
    given = changes.model_fields_set
    if not given:
        raise ApiError.one(400, "validation", "give expires_at or name to change")
    expires_at = None if changes.expires_at is None else _expiry(changes.expires_at, future=False)
    async with _changing(request, principal) as connection:
        key = await accounts.update_key(connection, principal.workspace_id, key_id, expires_at=expires_at,
                                        set_expires="expires_at" in given, name=changes.name,
                                        set_name="name" in given)
    return json_response(listing(API_KEYS, [render_key(key)]))


@routes.delete("/api/v1/api_keys/{key_id}")
async def revoke_key(request: web.Request) -> web.Response:
    """Revoke a key for good (again: nothing changes). It fails at once on this gateway, and every write
    applied after this answer refuses it."""
    principal = _admin(request)
    key_id = _key_id(request)
    async with _changing(request, principal) as connection:
        if await accounts.revoke_key(connection, principal.workspace_id, key_id) is None:
            raise not_found("API key")
    return web.Response(status=204)
