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
