"""Wire schemas of the administration API: users, project memberships and API keys.

Role and permission names are plain strings here: the gateway checks them against the ladders of
:mod:`cfv.domain.access` and answers 422 naming the valid ones.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

_NO_NUL = r"^[^\x00]*$"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=_NO_NUL)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320, pattern=_NO_NUL)]
Word = Annotated[str, StringConstraints(max_length=255, pattern=_NO_NUL)]  # checked against its list later
Moment = Annotated[str, StringConstraints(max_length=64)]


class UserCreate(BaseModel):
    """``POST /api/v1/users``: a person (with an email address) or a service account (with a unique name)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["person", "service"] = "person"
    name: Name
    email: Email | None = None
    account_role: Word


class UserUpdate(BaseModel):
    """``PATCH /api/v1/users/{id}``: what to change; ``active: true`` reactivates (``false`` deactivates);
    ``email: null`` removes a service account's address."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    email: Email | None = None
    account_role: Word | None = None
    active: StrictBool | None = None


class MembershipPut(BaseModel):
    """``PUT /api/v1/users/{id}/memberships/{project}``."""

    model_config = ConfigDict(extra="forbid")

    permission: Word


class KeyCreate(BaseModel):
    """``POST /api/v1/users/{id}/api_keys``: an optional note, and when the key expires (never, by default)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    expires_at: Moment | None = Field(default=None, description="an ISO 8601 date and time in the future "
                                      "(UTC unless it has an offset)")
    expires_in_days: StrictInt | None = Field(default=None, ge=1, le=36_500)


class KeyUpdate(BaseModel):
    """``PATCH /api/v1/api_keys/{id}``: ``expires_at`` (null: never; a past time expires the key now), ``name``."""

    model_config = ConfigDict(extra="forbid")

    expires_at: Moment | None = None
    name: Name | None = None


class UserOut(BaseModel):
    """A user as the admin API answers it."""

    model_config = ConfigDict(frozen=True)

    id: str
    uuid: str = Field(description="how work-item user relations (Plane) name the user")
    kind: Literal["person", "service"]
    name: str
    email: str | None
    account_role: str
    created_at: str
    updated_at: str
    deactivated_at: str | None = Field(description="set once the user is deactivated (DELETE)")


class MembershipOut(BaseModel):
    """A user's permission on a project; its id is the project (unique among one user's memberships)."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    project: str
    permission: str
    created_at: str
    updated_at: str


class KeyOut(BaseModel):
    """An API key, without its secret (cfv keeps only a hash); ``key`` holds the secret in the answer to its
    creation only."""

    model_config = ConfigDict(frozen=True)

    id: str
    prefix: str
    name: str | None
    user_id: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    status: Literal["active", "expired", "revoked"]
    key: str | None = Field(default=None, description="the secret: shown once, when the key is made")
