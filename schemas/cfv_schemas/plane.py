"""HTTP bodies of the Plane face: projects, work-item properties, their options, and property values."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from cfv_schemas.commands import ExternalText
from cfv_schemas.kantata import Description, Name

PropertyType = Literal["TEXT", "URL", "EMAIL", "FILE", "DATETIME", "DECIMAL", "BOOLEAN", "OPTION", "RELATION"]
RelationType = Literal["USER", "ISSUE"]
MULTI_TYPES = frozenset({"OPTION", "RELATION"})
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9]{1,12}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectIn(_Body):
    """``POST projects/``: a project, the scope of work-item properties."""

    id: UUID | None = Field(default=None, description="optional; chosen by the client, unique in the workspace")
    name: Name
    identifier: Identifier = Field(description="1 to 12 letters or digits, stored upper-case")
    description: Description = ""


class ProjectPatch(_Body):
    """``PATCH projects/{id}/``: any of name, identifier, description."""

    name: Name | None = None
    identifier: Identifier | None = None
    description: Description | None = None


class PropertyIn(_Body):
    """``POST …/work-item-properties/``: define a custom property of the project's work items."""

    display_name: Name
    description: Description = ""
    property_type: PropertyType
    relation_type: RelationType | None = Field(default=None, validate_default=True,
                                               description="required for RELATION, else absent")
    is_multi: StrictBool = Field(default=False, description="OPTION and RELATION only: the value is a list")
    is_required: StrictBool = False
    default_value: Any = Field(default=None, description="a value of the property's type (not for OPTION)")
    is_active: StrictBool = True
    settings: dict[str, Any] = Field(default_factory=dict, description="free-form display settings, kept")
    validation_rules: dict[str, Any] = Field(default_factory=dict, description="enforced on every write")
    external_id: ExternalText | None = None
    external_source: ExternalText | None = None

    @field_validator("relation_type")
    @classmethod
    def _relation_type_for_relations(cls, value: str | None, info: ValidationInfo) -> str | None:
        property_type = info.data.get("property_type")
        if property_type is not None and (property_type == "RELATION") != (value is not None):
            raise ValueError("is required for RELATION properties (USER or ISSUE), and only for them")
        return value

    @field_validator("is_multi")
    @classmethod
    def _multi_for_options_and_relations(cls, value: bool, info: ValidationInfo) -> bool:
        property_type = info.data.get("property_type")
        if value and property_type is not None and property_type not in MULTI_TYPES:
            raise ValueError("only OPTION and RELATION properties can be is_multi")
        return value


class PropertyPatch(_Body):
    """``PATCH …/work-item-properties/{id}/``: the type (``property_type``, ``relation_type``, ``is_multi``)
    is fixed; sending it unchanged is allowed."""

    display_name: Name | None = None
    description: Description | None = None
    property_type: PropertyType | None = None
    relation_type: RelationType | None = None
    is_multi: StrictBool | None = None
    is_required: StrictBool | None = None
    default_value: Any = None
    is_active: StrictBool | None = None
    settings: dict[str, Any] | None = None
    validation_rules: dict[str, Any] | None = None
    external_id: ExternalText | None = None
    external_source: ExternalText | None = None


class OptionIn(_Body):
    """``POST …/options/``: one choice of an OPTION property."""

    name: Name
    description: Description = ""
    is_default: StrictBool = False
    is_active: StrictBool = True
    external_id: ExternalText | None = None
    external_source: ExternalText | None = None


class OptionPatch(_Body):
    """``PATCH …/options/{id}/``."""

    name: Name | None = None
    description: Description | None = None
    is_default: StrictBool | None = None
    is_active: StrictBool | None = None
    external_id: ExternalText | None = None
    external_source: ExternalText | None = None


class ValueIn(_Body):
    """``POST``/``PATCH …/values/``: the value (a list of UUIDs, or one, for ``is_multi`` properties)."""

    value: Any = Field(description="required; its format depends on the property's type")
    external_id: ExternalText | None = None
    external_source: ExternalText | None = None


# --- answers ------------------------------------------------------------------------------------------


class ProjectOut(BaseModel):
    """A project as answered."""

    id: UUID
    name: str
    identifier: str
    description: str
    created_at: str
    updated_at: str


class PropertyOut(BaseModel):
    """A work-item property as answered; ``name`` is a slug of ``display_name``."""

    id: UUID
    name: str
    display_name: str
    description: str
    property_type: PropertyType
    relation_type: RelationType | None
    is_multi: bool
    is_required: bool
    default_value: Any
    is_active: bool
    settings: dict[str, Any]
    validation_rules: dict[str, Any]
    external_id: str | None
    external_source: str | None
    project: UUID
    created_at: str
    updated_at: str


class OptionOut(BaseModel):
    """An option as answered."""

    id: UUID
    name: str
    description: str
    sort_order: int
    is_default: bool
    is_active: bool
    property: UUID
    external_id: str | None
    external_source: str | None
    created_at: str
    updated_at: str


class ValueOut(BaseModel):
    """One value as answered (a multi property answers a list of these, one per item).

    ``id`` changes with every write: a write makes a new value. ``value`` is text, a number, a boolean, or
    the UUID of an option, user or work item; DATETIME values read ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS``.
    """

    id: UUID
    property_id: UUID
    issue_id: UUID
    value: Any
    value_type: PropertyType
    external_id: str | None
    external_source: str | None
    created_at: str
    updated_at: str
