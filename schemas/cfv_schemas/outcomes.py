"""Operation outcomes: what became of a command, as stored and as sent back to a waiting gateway."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class ErrorOut(BaseModel):
    """One reason a command was refused (Kantata's error shape, plus where)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["validation", "not_found", "conflict", "precondition_failed", "internal",
                  "unauthenticated", "forbidden", "unavailable"]
    message: str
    field: str | None = None
    index: int | None = None
    custom_field_id: int | None = None


class ValueOut(BaseModel):
    """A value as stored (or, for a delete, as it was), face-neutral; each face renders it its own way."""

    model_config = ConfigDict(frozen=True)

    change: Literal["created", "replaced", "deleted"]
    id: int
    subject_type: str
    subject_id: str
    custom_field_id: int
    custom_field_name: str
    value_type: str
    value: Any = Field(description="null for a delete")
    external_id: str | None = None
    external_source: str | None = None
    origin: str | None = None
    sequence: int
    setter: str
    hidden: bool = Field(default=False, description=(
        "the writer may write but not read this field: the value is not shown"))
    operation_id: UUID
    created_at: datetime


class Outcome(BaseModel):
    """The end state of an operation: its values on success, its errors on failure."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    status: Literal["succeeded", "failed"]
    values: list[ValueOut] = []
    errors: list[ErrorOut] = []
    replayed_from: UUID | None = None
