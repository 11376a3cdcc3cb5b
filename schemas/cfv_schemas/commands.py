"""Commands: what the gateway (or an integration) publishes to the ``cfv.commands`` exchange.

A message body is a :class:`CommandEnvelope`, JSON encoded, holding one or more commands. Publish it
persistent, with the workspace id (decimal) as routing key: that keeps one workspace's commands in one
ordered stream. Sign it with the API key the commands act as (:mod:`cfv_schemas.signing`): a message without
a valid signature is refused and its operations marked failed. Set the AMQP ``reply_to`` (and
``correlation_id``) properties to receive the outcomes, as a JSON list, once applied.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, StrictStr, StringConstraints, Tag

MAX_BULK = 100
MAX_COMMANDS_PER_MESSAGE = 100  # one message is one signature check and one share of a transaction: bounded


ExternalText = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]


class CommandItem(BaseModel):
    """One change of one value, as the client sent it; the worker validates its content.

    ``op`` is ``write`` (the default: the value overrides the current one) or ``delete`` (the current value is
    removed; there must be one). ``must_exist`` makes a write an update: refused when there is no value yet.
    A multi choice write may be ``{"add": [...], "remove": [...]}``, applied to the current set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject_type: str
    subject_id: StrictInt | StrictStr = Field(description="strict: true/false are not ids")
    custom_field_id: StrictInt
    op: Literal["write", "delete"] = "write"
    value: Any = Field(default=None, json_schema_extra={
        "description": "the value, in the format of the field's type; required to write, absent to delete"})
    must_exist: bool = Field(default=False, description="refuse the write if there is no value to replace")
    external_id: ExternalText | None = Field(default=None, description="the value's id in another system")
    external_source: ExternalText | None = Field(default=None, description="which system, e.g. 'jira'")
    expected_version: int | None = Field(default=None, ge=0, description=(
        "refuse the change unless the value is at this version (its sequence; 0: never written)"))
    origin: ExternalText | None = Field(default=None, description=(
        "who made the change, e.g. an integration's name; echoed in its event so a sync can skip its own"))


class _CommandBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID = Field(description="unique per command; also the id of its operation")
    workspace_id: int
    actor: str | None = Field(default=None, description=(
        "ignored: the worker names the setter after the key that signed the message, e.g. 'key:12'"))
    accepted_at: datetime
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    request_hash: str | None = Field(default=None, description="hash of the request, for idempotency")
    request_id: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,128}$")] | None = Field(
        default=None, description="the id of the request the command came with (the gateway's X-Request-ID): "
        "logged by the worker and kept as the change events' correlationid")
    reply_to: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,32}$")] | None = Field(
        default=None, description="the gateway waiting for the outcome, if any (its id: set by gateways only)")


class WriteValues(_CommandBase):
    """Write or delete values, all or nothing: each write overrides the current value of its field on its
    subject, each delete removes it."""

    type: Literal["write_values"] = "write_values"
    items: Annotated[list[CommandItem], Field(min_length=1, max_length=MAX_BULK)]


class DeleteField(_CommandBase):
    """Delete a custom field and every value it holds (each announced as deleted), in one transaction; the
    commands after it find the field gone."""

    type: Literal["delete_field"]
    custom_field_id: StrictInt


class DeleteProject(_CommandBase):
    """Delete a work-item project (Plane): each of its properties deleted as :class:`DeleteField` deletes one
    (every value announced as deleted), and the project itself, in one transaction. Takes an account
    administrator."""

    type: Literal["delete_project"]
    project_id: UUID


class SubjectPlacement(BaseModel):
    """A subject and the project it belongs to (a Workspace subject's id, or a project's UUID)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subject_type: Literal["Story", "Resource"]
    subject_id: StrictInt | StrictStr
    project: StrictInt | Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="a Workspace id (Kantata project) or a project UUID (Plane)")


class RegisterSubjects(_CommandBase):
    """Place Stories and Resources in projects, so that project permissions govern their values; all or nothing.
    Moving a subject needs ``project_admin`` on both projects (or an account administrator)."""

    type: Literal["register_subjects"]
    subjects: Annotated[list[SubjectPlacement], Field(min_length=1, max_length=MAX_BULK)]


def _command_type(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("type", "write_values"))  # the first format had no type: it was always a write
    return str(getattr(data, "type", "write_values"))


Command = Annotated[Annotated[WriteValues, Tag("write_values")] | Annotated[DeleteField, Tag("delete_field")]
                    | Annotated[DeleteProject, Tag("delete_project")]
                    | Annotated[RegisterSubjects, Tag("register_subjects")],
                    Discriminator(_command_type)]


class CommandEnvelope(BaseModel):
    """The body of a command message: a format version and one or more commands, applied in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    commands: Annotated[list[Command], Field(min_length=1, max_length=MAX_COMMANDS_PER_MESSAGE)]
