"""Wire schemas of the webhooks API (``/api/v1/webhooks``): bodies and answers.

Event types, subject types and URLs are plain here: the gateway checks them (known types, no private addresses)
and answers 422 naming what is wrong.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

_NO_NUL = r"^[^\x00]*$"

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048, pattern=_NO_NUL)]
Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=_NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=1000, pattern=_NO_NUL)]
FieldId = Annotated[StrictInt, Field(gt=0, lt=2**63)]

_EVENT_TYPES = ("the CloudEvent types to deliver: value events (cfv.value.{created|replaced|deleted}.v1) and "
                "definition events (cfv.{field|choice|set|project|property|option}.{created|updated|deleted}.v1)")


class WebhookCreate(BaseModel):
    """``POST /api/v1/webhooks``: where to deliver, and which events."""

    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="http or https; its host must resolve to public addresses")
    event_types: list[Word] = Field(min_length=1, max_length=50, description=_EVENT_TYPES)
    subject_types: list[Word] | None = Field(default=None, min_length=1, max_length=20,
                                             description="only events of these subject types (default: all)")
    custom_field_ids: list[FieldId] | None = Field(default=None, min_length=1, max_length=1000,
                                                   description="only events of these fields (default: all)")
    description: Description | None = None


class WebhookUpdate(BaseModel):
    """``PATCH /api/v1/webhooks/{id}``: what to change. ``enabled: true`` re-enables a disabled webhook (it resumes
    where it stopped), ``false`` disables it; ``rotate_secret: true`` makes a new secret, shown in the answer.
    ``subject_types``/``custom_field_ids``: null for all."""

    model_config = ConfigDict(extra="forbid")

    url: Url | None = None
    event_types: list[Word] | None = Field(default=None, min_length=1, max_length=50, description=_EVENT_TYPES)
    subject_types: list[Word] | None = Field(default=None, min_length=1, max_length=20)
    custom_field_ids: list[FieldId] | None = Field(default=None, min_length=1, max_length=1000)
    description: Description | None = None
    enabled: StrictBool | None = None
    rotate_secret: StrictBool | None = None


class WebhookOut(BaseModel):
    """A webhook as the API answers it; ``secret`` only in the answer to its creation or to a rotation."""

    model_config = ConfigDict(frozen=True)

    id: str
    url: str
    description: str | None
    event_types: list[str]
    subject_types: list[str] | None
    custom_field_ids: list[int] | None
    created_by: str = Field(description="the user who made it: deliveries carry only what this user may read")
    status: Literal["enabled", "disabled"]
    disabled_at: str | None
    disabled_reason: str | None
    position: int = Field(description="the last position of the event log delivered (or given up)")
    consecutive_failures: int
    next_attempt_at: str | None = Field(description="when a failing delivery is tried again")
    created_at: str
    updated_at: str
    secret: str | None = Field(default=None, description="the signing secret (whsec_...): shown once, when the "
                               "webhook is made or its secret rotated")


class DeliveryOut(BaseModel):
    """One attempt at delivering an event to a webhook."""

    model_config = ConfigDict(frozen=True)

    id: str
    webhook_id: str
    position: int
    event_id: str
    event_type: str
    status: Literal["pending", "succeeded", "failed", "given_up"] = Field(
        description="pending: a retry not sent yet; given_up: failed for CFV_WEBHOOK_GIVE_UP_AFTER, skipped")
    attempt: int
    manual: bool = Field(description="a retry asked through the API")
    response_status: int | None
    error: str | None
    duration_ms: int | None
    attempted_at: str
