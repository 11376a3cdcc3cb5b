"""Users, their project memberships and their API keys: what the command line, the admin API and the tests share.

Every change here is meant to run inside :func:`locked`: a transaction holding the workspace's advisory lock,
the one the worker holds while it applies a batch (and re-reads keys and roles in). So a key revoked or a role
lowered through here has taken effect for every write applied after the change returns, and the change waited
for the batches of the workspace that were in flight.

Problems a caller should hear about are :class:`AccountError`: the admin API answers them as 4xx errors, the
command line as click errors.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from uuid import UUID

import asyncpg
from email_validator import EmailNotValidError, validate_email

from cfv.domain import access
from cfv.domain.access import ACCOUNT_ADMIN, ACCOUNT_ROLES, PROJECT_PERMISSIONS
from cfv.domain.credentials import new_key
from cfv.domain.values import InvalidValue
from cfv.store.database import Connection, Executor
from cfv.store.queries import query

USER_KINDS = ("person", "service")
_MAX_ID = 2**63
_DURATION = re.compile(r"(\d{1,7})\s*([mhdw])", re.ASCII)
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AccountError(Exception):
    """A change or lookup that cannot be made, with a message meant for the caller.

    ``kind`` is ``validation`` (a bad name, role, email, time...: the admin API answers 422), ``conflict``
    (it clashes with what exists: 409) or ``not_found`` (404). ``valid`` lists the accepted values, when the
    problem is a name outside a fixed list.
    """

    def __init__(self, kind: Literal["validation", "conflict", "not_found"], message: str,
                 field: str | None = None, valid: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.field = field
        self.valid = valid


@dataclass(frozen=True, slots=True)
class User:
    """A person or a service account of a workspace."""

    id: int
    uuid: UUID  # how work-item properties (Plane) name the user
    kind: str
    name: str
    email: str | None
    account_role: str
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None

    @property
    def active(self) -> bool:
        """Not deactivated: its keys authenticate."""
        return self.deactivated_at is None

    @classmethod
    def of(cls, row: asyncpg.Record) -> User:
        """A ``users`` row."""
        return cls(row["id"], row["uuid"], row["kind"], row["name"], row["email"], row["account_role"],
                   row["created_at"], row["updated_at"], row["deactivated_at"])


@dataclass(frozen=True, slots=True)
class Membership:
    """A user's permission on a project."""

    user_id: int
    project: str
    permission: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> Membership:
        """A ``project_memberships`` row."""
        return cls(row["user_id"], row["project"], row["permission"], row["created_at"], row["updated_at"])


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What is known of a key besides its secret (which is never stored)."""

    id: int
    user_id: int
    prefix: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired`` (a deactivated user's keys fail too, whatever this says)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    @classmethod
    def of(cls, row: asyncpg.Record) -> KeyInfo:
        """An ``api_keys`` row (without its hash)."""
        return cls(row["id"], row["user_id"], row["prefix"], row["name"], row["created_at"], row["expires_at"],
                   row["revoked_at"])


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: ``secret`` is shown once and never stored."""

    id: int
    user_id: int
    prefix: str
    secret: str
    created_at: datetime
    expires_at: datetime | None
    name: str | None = None


# --- locking ------------------------------------------------------------------------------------------------


@asynccontextmanager
async def locked(connection: Connection, workspace_id: int) -> AsyncIterator[None]:
    """A transaction that first takes the workspace's lock (the worker's apply lock): for every change of users,
    memberships and keys."""
    async with connection.transaction():
        await connection.execute(query("lock_workspace"), workspace_id)
        yield


# --- checks -------------------------------------------------------------------------------------------------


def check_role(role: str, field: str = "account_role") -> str:
    """``role`` if it is an account role, else a validation error listing them."""
    if role not in ACCOUNT_ROLES:
        raise AccountError("validation", f"{_shown(role)} is not an account role; valid roles (lowest first): "
                           f"{', '.join(ACCOUNT_ROLES)}", field, ACCOUNT_ROLES)
    return role


def check_permission(permission: str, field: str = "permission") -> str:
    """``permission`` if it is a project permission, else a validation error listing them."""
    if permission not in PROJECT_PERMISSIONS:
        raise AccountError("validation", f"{_shown(permission)} is not a project permission; valid permissions "
                           f"(lowest first): {', '.join(PROJECT_PERMISSIONS)}", field, PROJECT_PERMISSIONS)
    return permission


def check_kind(kind: str) -> str:
    """``person`` or ``service``."""
    if kind not in USER_KINDS:
        raise AccountError("validation", f"{_shown(kind)} is not a kind of user; valid kinds: person, service",
                           "kind", USER_KINDS)
    return kind


def check_email(email: str) -> str:
    """The normalized form of an email address, or a validation error."""
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise AccountError("validation", f"not an email address: {error}", "email") from None


def check_name(name: str) -> str:
    """A user's name: 1 to 255 characters, stripped, no NUL."""
    name = name.strip()
    if not name or len(name) > 255 or "\x00" in name:
        raise AccountError("validation", "a name is 1 to 255 characters", "name")
    return name


def canonical_project(project: str, field: str = "project") -> str:
    """A project as stored, in its one spelling (see :func:`cfv.domain.access.canonical_project`): a Kantata
    Workspace id as a plain positive integer, or a Plane project's UUID in lower case."""
    try:
        return access.canonical_project(project.strip())
    except InvalidValue as error:
        raise AccountError("validation", f"{_shown(project)} is not a project: {error}", field) from None


#: The moments the API takes (key expiries): from 1970 to the end of 9999, UTC. Beyond them the database and
#: Python disagree (asyncpg reads 0001-01-01T00:00:00+00 back as a naive datetime, and any comparison with it
#: fails); migration 0010 holds the stored ones to the same range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def parse_datetime(text: str, field: str = "expires_at") -> datetime:
    """An ISO 8601 date (midnight UTC that day) or date and time (UTC unless it has an offset), between
    :data:`EARLIEST` and :data:`LATEST`."""
    text = text.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(), UTC)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise AccountError("validation", f"{_shown(text)} is not an ISO 8601 date or date and time "
                           "(such as 2030-01-31 or 2030-01-31T12:00:00Z)", field) from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        within = EARLIEST <= moment <= LATEST
    except OverflowError:  # in UTC it would be before year 1 or after 9999
        within = False
    if not within:
        raise AccountError("validation", f"{_shown(text)} is out of range: a moment from "
                           f"{EARLIEST.date().isoformat()} to {LATEST.date().isoformat()} (UTC)", field)
    return moment


def parse_expiry(text: str, now: datetime | None = None, field: str = "expires") -> datetime:
    """When a key made ``now`` expires: a duration (``30d``, ``12h``, ``90m``, ``2w``) from now, or an ISO date
    or date and time; it must be in the future."""
    now = now or datetime.now(UTC)
    duration = _DURATION.fullmatch(text.strip().lower())
    if duration:
        amount, unit = int(duration[1]), _DURATION_UNITS[duration[2]]
        try:
            moment = now + timedelta(**{unit: amount})
        except OverflowError:
            raise AccountError("validation", f"{_shown(text)} is too far ahead", field) from None
    else:
        try:
            moment = parse_datetime(text, field)
        except AccountError:
            raise AccountError("validation", f"{_shown(text)} is neither a duration (such as 30d, 12h, 90m or 2w) "
                               "nor an ISO 8601 date or date and time", field) from None
    return check_future(moment, now, field)


def check_future(moment: datetime, now: datetime | None = None, field: str = "expires_at") -> datetime:
    """``moment`` if it is still to come."""
    if moment <= (now or datetime.now(UTC)):
        raise AccountError("validation", f"{moment.isoformat()} is not in the future", field)
    return moment


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")


# --- users --------------------------------------------------------------------------------------------------


async def owner_user(connection: Connection, workspace_id: int) -> int:
    """The id of the workspace's administrator service account ('owner'), made if missing."""
    user_id = await connection.fetchval(query("owner_user"), workspace_id)
    assert user_id is not None
    return int(user_id)


async def get_user(connection: Connection, workspace_id: int, user_id: int) -> User | None:
    """A user of the workspace (None: unknown, or another workspace's)."""
    if not 0 < user_id < _MAX_ID:
        return None
    row = await connection.fetchrow(query("get_user"), workspace_id, user_id)
    return None if row is None else User.of(row)


async def find_user(connection: Connection, workspace_id: int, ref: str) -> User | None:
    """A user named by id (digits), email (with an ``@``) or, otherwise, a service account's name."""
    ref = ref.strip()
    if ref.isascii() and ref.isdigit() and len(ref) <= 19:
        return await get_user(connection, workspace_id, int(ref))
    if "@" in ref:
        row = await connection.fetchrow(query("user_by_email"), workspace_id, ref)
        return None if row is None else User.of(row)
    return await find_service(connection, workspace_id, ref)


async def find_service(connection: Connection, workspace_id: int, name: str) -> User | None:
    """The workspace's service account called ``name``."""
    row = await connection.fetchrow(query("service_by_name"), workspace_id, name)
    return None if row is None else User.of(row)


async def require_user(connection: Connection, workspace_id: int, user_id: int) -> User:
    """A user of the workspace, or a not-found error."""
    user = await get_user(connection, workspace_id, user_id)
    if user is None:
        raise AccountError("not_found", "user not found")
    return user


async def list_users(connection: Connection, workspace_id: int, limit: int | None = None,
                     offset: int = 0) -> list[User]:
    """The workspace's users by id (all of them unless ``limit``)."""
    return [User.of(r) for r in await connection.fetch(query("list_users"), workspace_id, limit, offset)]


async def count_users(connection: Connection, workspace_id: int) -> int:
    """How many users the workspace has (deactivated ones included)."""
    return int(await connection.fetchval(query("count_users"), workspace_id) or 0)


async def create_user(connection: Connection, workspace_id: int, *, name: str, account_role: str,
                      kind: str = "person", email: str | None = None) -> User:
    """Make a person (who has an email address) or a service account (whose name is unique in the workspace)."""
    kind = check_kind(kind)
    name = check_name(name)
    account_role = check_role(account_role)
    if email is not None:
        email = check_email(email)
    elif kind == "person":
        raise AccountError("validation", "a person needs an email address", "email")
    try:
        row = await connection.fetchrow(query("create_user"), workspace_id, kind, name, email, account_role)
    except asyncpg.UniqueViolationError as error:
        raise _duplicate(error, name, email) from None
    assert row is not None
    return User.of(row)


async def update_user(connection: Connection, workspace_id: int, user_id: int, *, name: str | None = None,
                      email: str | None = None, clear_email: bool = False, account_role: str | None = None,
                      active: bool | None = None) -> User:
    """Change a user: name, email (``clear_email`` removes a service account's), role, and ``active``: False
    deactivates (its keys stop working), True reactivates. The last active account administrator of a
    workspace can neither be deactivated nor demoted."""
    user = await require_user(connection, workspace_id, user_id)
    if name is not None:
        name = check_name(name)
    if account_role is not None:
        account_role = check_role(account_role)
    if email is not None:
        email = check_email(email)
    elif clear_email and user.kind == "person":
        raise AccountError("validation", "a person needs an email address", "email")
    demoted = account_role is not None and account_role != ACCOUNT_ADMIN
    if user.active and user.account_role == ACCOUNT_ADMIN and (demoted or active is False):
        await _not_last_admin(connection, workspace_id, user, "demote" if demoted else "deactivate")
    try:
        row = await connection.fetchrow(query("update_user"), workspace_id, user_id, name,
                                        email is not None or clear_email, email, account_role, active)
    except asyncpg.UniqueViolationError as error:
        raise _duplicate(error, name or user.name, email) from None
    assert row is not None
    return User.of(row)


async def _not_last_admin(connection: Connection, workspace_id: int, user: User, verb: str) -> None:
    if not await connection.fetchval(query("other_active_admins"), workspace_id, user.id):
        raise AccountError("conflict", f"user {user.id} is the workspace's last active account administrator; "
                           f"make another user account_admin before you {verb} it", "account_role"
                           if verb == "demote" else None)


def _duplicate(error: asyncpg.UniqueViolationError, name: str, email: str | None) -> AccountError:
    if error.constraint_name == "users_service_name":
        return AccountError("conflict", f"a service account named {_shown(name)} exists already", "name")
    return AccountError("conflict", f"a user with the email address {email} exists already", "email")


# --- memberships --------------------------------------------------------------------------------------------


async def list_memberships(connection: Connection, workspace_id: int, user_id: int, limit: int | None = None,
                           offset: int = 0) -> list[Membership]:
    """A user's memberships by project."""
    return [Membership.of(r) for r in await connection.fetch(query("list_memberships"), workspace_id, user_id,
                                                              limit, offset)]


async def count_memberships(connection: Connection, workspace_id: int, user_id: int) -> int:
    """How many projects a user is a member of."""
    return int(await connection.fetchval(query("count_memberships"), workspace_id, user_id) or 0)


async def set_membership(connection: Connection, workspace_id: int, user_id: int, project: str,
                         permission: str) -> tuple[Membership, bool]:
    """Give a user ``permission`` on ``project`` (made, or changed); True if the membership is new."""
    await require_user(connection, workspace_id, user_id)
    project = canonical_project(project)
    permission = check_permission(permission)
    row = await connection.fetchrow(query("set_membership"), workspace_id, user_id, project, permission)
    assert row is not None
    return Membership.of(row), bool(row["created"])


async def delete_membership(connection: Connection, workspace_id: int, user_id: int, project: str) -> bool:
    """End a user's membership of a project; False if there was none."""
    try:
        project = canonical_project(project)
    except AccountError:
        return False
    return await connection.fetchval(query("delete_membership"), workspace_id, user_id, project) is not None


# --- keys ---------------------------------------------------------------------------------------------------


async def issue_key(connection: Connection, workspace_id: int, *, user_id: int | None = None,
                    name: str | None = None, expires_at: datetime | None = None) -> IssuedKey:
    """Make a key for ``user_id`` (default: the workspace's owner service account), who must be active."""
    if user_id is None:
        user_id = await owner_user(connection, workspace_id)
    user = await require_user(connection, workspace_id, user_id)
    if not user.active:
        raise AccountError("conflict", f"user {user_id} is deactivated; reactivate it before making it keys")
    made = new_key()
    row = await connection.fetchrow(query("create_key"), workspace_id, user_id, made.prefix, made.digest,
                                    made.public_key, name, expires_at)
    assert row is not None
    return IssuedKey(row["id"], user_id, made.prefix, made.secret, row["created_at"], expires_at, name)


async def list_keys(connection: Connection, workspace_id: int, *, user_id: int | None = None,
                    limit: int | None = None, offset: int = 0) -> list[KeyInfo]:
    """The workspace's keys (of one user, if given) by id, revoked ones included."""
    return [KeyInfo.of(r) for r in await connection.fetch(query("list_keys"), workspace_id, user_id, None, limit,
                                                           offset)]


async def count_keys(connection: Connection, workspace_id: int, *, user_id: int | None = None) -> int:
    """How many keys :func:`list_keys` would list."""
    return int(await connection.fetchval(query("count_keys"), workspace_id, user_id) or 0)


async def get_key(connection: Connection, workspace_id: int, key_id: int) -> KeyInfo | None:
    """A key of the workspace (None: unknown, or another workspace's)."""
    if not 0 < key_id < _MAX_ID:
        return None
    rows = await connection.fetch(query("list_keys"), workspace_id, None, key_id, 1, 0)
    return KeyInfo.of(rows[0]) if rows else None


async def revoke_key(connection: Connection, workspace_id: int, key_id: int) -> KeyInfo | None:
    """Revoke a key for good (a revoked key keeps its first ``revoked_at``); None if the workspace has no such
    key."""
    if not 0 < key_id < _MAX_ID:
        return None
    row = await connection.fetchrow(query("revoke_key"), workspace_id, key_id)
    return None if row is None else KeyInfo.of(row)


async def update_key(connection: Connection, workspace_id: int, key_id: int, *, expires_at: datetime | None = None,
                     set_expires: bool = False, name: str | None = None, set_name: bool = False) -> KeyInfo:
    """Change when a key expires (``set_expires``; None: never; a past time expires it now) or its name."""
    key = await get_key(connection, workspace_id, key_id)
    if key is None:
        raise AccountError("not_found", "API key not found")
    if key.revoked_at is not None:
        raise AccountError("conflict", f"API key {key_id} is revoked; make a new key instead")
    row = await connection.fetchrow(query("update_key"), workspace_id, key_id, set_expires, expires_at, set_name,
                                    name)
    assert row is not None
    return KeyInfo.of(row)


# --- lookups of the gateway and the command line (keyword-only) ------------------------------------------------


async def principal_by_key_hash(executor: Executor, *, digest: bytes) -> asyncpg.Record | None:
    """The API key whose secret hashes to ``digest``, with its user and workspace (key_id, secret_hash,
    revoked_at, expires_at, public_key, user_id, account_role, deactivated_at, workspace_id, slug)."""
    return await executor.fetchrow(query("principal_by_key_hash"), digest)


async def record_public_key(executor: Executor, *, key_id: int, public_key: bytes) -> None:
    """Record the public half of a key's signing key, if none is recorded (a key made before keys signed)."""
    await executor.execute(query("record_public_key"), key_id, public_key)


async def project_permission(executor: Executor, *, workspace_id: int, user_id: int, project: str) -> str | None:
    """The user's permission on ``project``, if a membership gives one."""
    permission = await executor.fetchval(query("membership_permission"), workspace_id, user_id, project)
    return str(permission) if permission is not None else None


async def admin_caller(connection: Connection, *, key_id: int, workspace_id: int) -> asyncpg.Record | None:
    """The calling key as it is now (valid: not revoked, expired or deactivated; admin: an account
    administrator's), None if it is gone. Read under the workspace's lock (:func:`locked`)."""
    return await connection.fetchrow(query("admin_caller"), key_id, workspace_id)


async def key_owners(executor: Executor, *, workspace_id: int, key_ids: Sequence[int]) -> list[asyncpg.Record]:
    """The users behind API keys of the workspace (key_id, user_id, kind, name)."""
    return await executor.fetch(query("key_owners"), workspace_id, list(key_ids))


async def create_workspace(connection: Connection, *, slug: str, name: str) -> int | None:
    """Create the workspace ``slug``; its id, or None if it exists already."""
    created = await connection.fetchval(query("create_workspace"), slug, name)
    return int(created) if created is not None else None


async def workspace_id(connection: Connection, *, slug: str) -> int | None:
    """The id of the workspace ``slug``, if it exists."""
    found = await connection.fetchval(query("workspace_id"), slug)
    return int(found) if found is not None else None
