"""HTTP bodies of the Kantata OX face: custom fields and custom field values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

from cfv_schemas.commands import MAX_BULK, ExternalText, SubjectPlacement

UNIQUE_VALUE_TYPES = frozenset({"string", "url", "email", "file", "date", "datetime", "number", "currency"})
NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL characters
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
SubjectTypeName = Literal["Estimate", "Story", "User", "Workspace", "WorkspaceGroup", "Resource", "WorkItem"]
ValueTypeName = Literal[
    "string", "url", "email", "file", "date", "datetime", "number", "currency", "boolean",
    "single", "multi", "relation",
]
AccessLevel = Literal[
    "account_collaboration", "project_creator", "project_lead", "reports_viewer", "reports_viewer_with_cost",
    "account_admin", "project_collaboration", "time_logging", "financial", "project_admin",
]


def _not_a_boolean(value: Any) -> Any:
    """Refuse JSON ``true``/``false`` where an id belongs (pydantic would otherwise read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("must be an id, not true or false")
    return value


class ExternalReference(BaseModel):
    """Where a value comes from in another system."""

    model_config = ConfigDict(extra="forbid")

    external_id: ExternalText | None = None
    external_source: ExternalText | None = None


class _ChangeOptions(BaseModel):
    """What any value change may carry besides the value."""

    model_config = ConfigDict(extra="forbid")

    expected_version: StrictInt | None = Field(default=None, ge=0, description=(
        "refuse (412) unless the value is at this version (its sequence; 0: never written)"))
    origin: ExternalText | None = Field(default=None, description="who changes it, echoed in the change event")
    external_reference: ExternalReference | None = None

    def change_options(self) -> dict[str, Any]:
        """These options as the fields of a core ``CommandItem``."""
        reference = self.external_reference or ExternalReference()
        return {"expected_version": self.expected_version, "origin": self.origin,
                "external_id": reference.external_id, "external_source": reference.external_source}


class CustomFieldValueIn(_ChangeOptions):
    """One value to write (Kantata's contract). A multi choice field also takes
    ``{"add": [choices], "remove": [choices]}``, applied atomically to the current set."""

    subject_type: str
    subject_id: Annotated[int | str, BeforeValidator(_not_a_boolean)]
    custom_field_id: Annotated[int, BeforeValidator(_not_a_boolean)]
    value: Any = Field(description="required; its format depends on the field's value_type")

    @model_validator(mode="before")
    @classmethod
    def _value_is_present(cls, data: Any) -> Any:
        if isinstance(data, dict) and "value" not in data:
            raise ValueError("value is required")
        return data


class WriteValuesIn(BaseModel):
    """``POST /api/v1/custom_field_values``: one value, or up to 100 under the plural key."""

    model_config = ConfigDict(extra="forbid")

    custom_field_value: CustomFieldValueIn | None = None
    custom_field_values: Annotated[list[CustomFieldValueIn], Field(min_length=1, max_length=MAX_BULK)] | None = (
        None
    )

    @model_validator(mode="after")
    def _exactly_one_key(self) -> Self:
        if (self.custom_field_value is None) == (self.custom_field_values is None):
            raise ValueError("send exactly one of custom_field_value and custom_field_values")
        return self

    def items(self) -> list[CustomFieldValueIn]:
        """The values to write, in order."""
        return [self.custom_field_value] if self.custom_field_value else list(self.custom_field_values or [])


class ValueUpdateIn(_ChangeOptions):
    """A new value for an existing value (``PUT /api/v1/custom_field_values/{id}``)."""

    value: Any = Field(description="required; its format depends on the field's value_type")


class ValueUpdateItem(ValueUpdateIn):
    """A new value for the existing value ``id`` (bulk ``PUT /api/v1/custom_field_values``)."""

    id: Annotated[int | str, BeforeValidator(_not_a_boolean)]


class UpdateValuesIn(BaseModel):
    """``PUT /api/v1/custom_field_values[/{id}]``: one update, or up to 100 (each with its ``id``)."""

    model_config = ConfigDict(extra="forbid")

    custom_field_value: ValueUpdateIn | None = None
    custom_field_values: Annotated[list[ValueUpdateItem], Field(min_length=1, max_length=MAX_BULK)] | None = None

    @model_validator(mode="after")
    def _exactly_one_key(self) -> Self:
        if (self.custom_field_value is None) == (self.custom_field_values is None):
            raise ValueError("send exactly one of custom_field_value and custom_field_values")
        return self


class ChoiceIn(BaseModel):
    """A choice of a single or multi choice field."""

    model_config = ConfigDict(extra="forbid")

    label: Name


class CustomFieldIn(BaseModel):
    """A new custom field."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    subject_type: SubjectTypeName
    value_type: ValueTypeName
    description: Description | None = None
    choices: Annotated[list[ChoiceIn | Name], Field(max_length=500)] = []
    relation_target: Literal["user", "work_item"] | None = None
    relation_multi: bool = False
    write_access: AccessLevel | None = None
    read_access: AccessLevel | None = None
    required: StrictBool = Field(default=False, description="blank values and deletes refused; false and 0 count")
    default_value: Any = Field(default=None, description="a value of the field's type (not for choice fields)")
    unique_constraint: StrictBool = Field(default=False, description=(
        "no two subjects hold the same value (string, url, email, file, date, datetime, number, currency)"))
    external_reference: ExternalReference | None = None

    @model_validator(mode="after")
    def _type_options_fit(self) -> Self:
        is_choice = self.value_type in ("single", "multi")
        if is_choice and not self.choices:
            raise ValueError(f"a {self.value_type} field needs at least one choice")
        if not is_choice and self.choices:
            raise ValueError("only single and multi fields have choices")
        if (self.value_type == "relation") != (self.relation_target is not None):
            raise ValueError("relation_target is required for relation fields, and only for them")
        if self.relation_multi and self.value_type != "relation":
            raise ValueError("relation_multi applies to relation fields only")
        if self.unique_constraint and self.value_type not in UNIQUE_VALUE_TYPES:
            raise ValueError(f"unique_constraint applies to {', '.join(sorted(UNIQUE_VALUE_TYPES))} fields only")
        return self

    def choice_labels(self) -> list[str]:
        """The choices' labels, in order."""
        return [c.label if isinstance(c, ChoiceIn) else c for c in self.choices]


class CustomFieldCreate(BaseModel):
    """``POST /api/v1/custom_fields``."""

    model_config = ConfigDict(extra="forbid")

    custom_field: CustomFieldIn


class CustomFieldChanges(BaseModel):
    """What ``PATCH`` may change; type and subject are fixed at creation, so stored values stay valid."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    write_access: AccessLevel | None = None
    read_access: AccessLevel | None = None
    add_choices: Annotated[list[ChoiceIn | Name], Field(max_length=500)] = []
    required: StrictBool | None = None
    default_value: Any = Field(default=None, description="null clears it")
    external_reference: ExternalReference | None = None


class CustomFieldUpdate(BaseModel):
    """``PATCH /api/v1/custom_fields/{id}``."""

    model_config = ConfigDict(extra="forbid")

    custom_field: CustomFieldChanges


class ChoiceOut(BaseModel):
    """A choice as answered."""

    id: str
    label: str
    position: int


class CustomFieldOut(BaseModel):
    """A custom field as answered."""

    id: str
    name: str
    description: str | None
    subject_type: str
    value_type: str
    relation_target: str | None
    relation_multi: bool
    write_access: str
    read_access: str
    required: bool
    default_value: Any
    unique_constraint: bool
    external_reference: ExternalReference
    choices: list[ChoiceOut]
    created_at: datetime
    updated_at: datetime


class CustomFieldValueOut(BaseModel):
    """A custom field value as answered."""

    id: str
    subject_type: str
    subject_id: int | str
    custom_field_id: str
    custom_field_name: str
    value_type: str
    value: Any
    sequence: int = Field(description="the value's version: +1 with each change of its field on its subject")
    setter: str
    operation_id: str
    external_reference: ExternalReference
    origin: str | None
    created_at: datetime
    updated_at: datetime


class ResultRef(BaseModel):
    """An entry of ``results``: which top-level key holds the object, and its id."""

    key: str
    id: str


class Meta(BaseModel):
    """Pagination of a Kantata answer."""

    count: int
    page_count: int
    page_number: int
    page_size: int


class ErrorItem(BaseModel):
    """One error (Kantata's shape), with the index of the bulk item it concerns."""

    type: str
    message: str
    field: str | None = None
    index: int | None = None
    custom_field_id: int | None = None


class ErrorsOut(BaseModel):
    """Every error answer: ``{"errors": [...]}``."""

    errors: list[ErrorItem]


class OperationOut(BaseModel):
    """``GET /api/v1/operations/{id}``."""

    id: str
    status: Literal["pending", "succeeded", "failed"]
    result: dict[str, Any] | None = None
    errors: list[ErrorItem] | None = None


class ChoiceFields(BaseModel):
    """A new choice of a single or multi choice field."""

    model_config = ConfigDict(extra="forbid")

    custom_field_id: Annotated[int, BeforeValidator(_not_a_boolean)]
    label: Name
    position: StrictInt | None = Field(default=None, ge=0, lt=2**31, description="default: after the last choice")
    external_reference: ExternalReference | None = None


class ChoiceCreate(BaseModel):
    """``POST /api/v1/custom_field_choices``."""

    model_config = ConfigDict(extra="forbid")

    custom_field_choice: ChoiceFields


class ChoiceChanges(BaseModel):
    """What ``PATCH`` may change of a choice; its field is fixed."""

    model_config = ConfigDict(extra="forbid")

    label: Name | None = None
    position: StrictInt | None = Field(default=None, ge=0, lt=2**31)
    external_reference: ExternalReference | None = None


class ChoiceUpdate(BaseModel):
    """``PATCH /api/v1/custom_field_choices/{id}``."""

    model_config = ConfigDict(extra="forbid")

    custom_field_choice: ChoiceChanges


class CustomFieldChoiceOut(BaseModel):
    """A choice as ``/api/v1/custom_field_choices`` answers it."""

    id: str
    custom_field_id: str
    label: str
    position: int
    external_reference: ExternalReference
    created_at: datetime
    updated_at: datetime


FieldIds = Annotated[list[Annotated[int, BeforeValidator(_not_a_boolean)]], Field(max_length=500)]


class SetFields(BaseModel):
    """A new custom field set: fields of one subject type, in order."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    subject_type: SubjectTypeName
    custom_field_ids: FieldIds = []


class SetCreate(BaseModel):
    """``POST /api/v1/custom_field_sets``."""

    model_config = ConfigDict(extra="forbid")

    custom_field_set: SetFields


class SetChanges(BaseModel):
    """What ``PATCH`` may change of a set: its name and its fields (the list replaces the old one)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    custom_field_ids: FieldIds | None = None


class SetUpdate(BaseModel):
    """``PATCH /api/v1/custom_field_sets/{id}``."""

    model_config = ConfigDict(extra="forbid")

    custom_field_set: SetChanges


class CustomFieldSetOut(BaseModel):
    """A custom field set as answered."""

    id: str
    name: str
    subject_type: str
    custom_field_ids: list[str]
    created_at: datetime
    updated_at: datetime


class SubjectProjectsIn(BaseModel):
    """``PUT /api/v1/subject_projects``: place up to 100 Stories or Resources in projects (all or nothing)."""

    model_config = ConfigDict(extra="forbid")

    subject_projects: Annotated[list[SubjectPlacement], Field(min_length=1, max_length=MAX_BULK)]
