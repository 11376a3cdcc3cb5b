"""Who may write and read which values: Kantata's account roles, project permissions and field access levels.

Pure rules, no I/O. A subject that belongs to a project (Workspace, Story, Resource, work item) is governed by
the user's permission on that project; Estimate, WorkspaceGroup and User subjects by the user's account role.
An account administrator reaches every level. The read side applies the same ladders in SQL
(``cfv_allowed`` in migration 0006); a test keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from cfv.domain.fields import SubjectType
from cfv.domain.values import JSON, InvalidValue, canonical_subject_id

#: Subjects governed by account-level roles; the others belong to a project.
ACCOUNT_SUBJECTS = frozenset({SubjectType.ESTIMATE, SubjectType.WORKSPACE_GROUP, SubjectType.USER})

#: Account-level roles, lowest first: each includes the ones before it.
ACCOUNT_ROLES = ("account_collaboration", "project_creator", "project_lead", "reports_viewer",
                 "reports_viewer_with_cost", "account_admin")
#: Project-level permissions, lowest first.
PROJECT_PERMISSIONS = ("project_collaboration", "time_logging", "financial", "project_admin")

ACCOUNT_ADMIN = "account_admin"
PROJECT_ADMIN = "project_admin"

_ACCOUNT_RANK = {name: rank for rank, name in enumerate(ACCOUNT_ROLES, 1)}
_PROJECT_RANK = {name: rank for rank, name in enumerate(PROJECT_PERMISSIONS, 1)}


class Action(StrEnum):
    """What a principal does with a value."""

    READ = "read"
    WRITE = "write"


def default_access(subject_type: SubjectType) -> tuple[str, str]:
    """The (write_access, read_access) a new field of ``subject_type`` gets unless told otherwise."""
    if subject_type in ACCOUNT_SUBJECTS:
        return ACCOUNT_ADMIN, ACCOUNT_ADMIN
    return PROJECT_ADMIN, "project_collaboration"


def valid_levels(subject_type: SubjectType) -> tuple[str, ...]:
    """The access levels a field of ``subject_type`` may require: account roles for account subjects, project
    permissions (or ``account_admin``) for project subjects."""
    if subject_type in ACCOUNT_SUBJECTS:
        return ACCOUNT_ROLES
    return (*PROJECT_PERMISSIONS, ACCOUNT_ADMIN)


def canonical_project(raw: JSON) -> str:
    """A project's one spelling: a Kantata project (a Workspace subject) id as a decimal positive integer, or a
    Plane project UUID in lower case; anything else is :class:`InvalidValue`."""
    if isinstance(raw, str) and not (raw.isascii() and raw.isdigit()):
        try:
            return canonical_subject_id(SubjectType.WORK_ITEM, raw)
        except InvalidValue:
            raise InvalidValue("a project is a Workspace id (a positive integer) or a project UUID") from None
    try:
        return canonical_subject_id(SubjectType.WORKSPACE, raw)
    except InvalidValue:
        raise InvalidValue("a project is a Workspace id (a positive integer) or a project UUID") from None


def subject_project(subject_type: SubjectType, subject_id: str, field_project: str | None,
                    registered: str | None) -> str | None:
    """The project a subject belongs to, or None (an account subject, or a subject nobody registered).

    A Workspace subject *is* a project; a work item belongs to its property's project; Stories and Resources
    belong where an integration registered them.
    """
    if subject_type in ACCOUNT_SUBJECTS:
        return None
    if subject_type is SubjectType.WORKSPACE:
        return subject_id
    if subject_type is SubjectType.WORK_ITEM and field_project is not None:
        return field_project
    return registered


@dataclass(frozen=True, slots=True)
class Grants:
    """What a user holds: an account role, and a permission per project they are a member of."""

    account_role: str
    projects: dict[str, str] = field(default_factory=dict)

    @property
    def is_admin(self) -> bool:
        """Account administrators reach every level on every subject of their workspace."""
        return self.account_role == ACCOUNT_ADMIN


def allowed(grants: Grants, level: str, subject_type: SubjectType, project: str | None) -> bool:
    """Whether ``grants`` reach ``level`` on a subject of ``subject_type`` in ``project``.

    An unknown level (never stored: fields are checked when defined) allows administrators only.
    """
    if grants.is_admin:
        return True
    if level == ACCOUNT_ADMIN:
        return False
    if subject_type in ACCOUNT_SUBJECTS:
        need = _ACCOUNT_RANK.get(level)
        return need is not None and _ACCOUNT_RANK.get(grants.account_role, 0) >= need
    need = _PROJECT_RANK.get(level)
    if need is None or project is None:
        return False
    return _PROJECT_RANK.get(grants.projects.get(project, ""), 0) >= need


def administers(grants: Grants, project: str | None) -> bool:
    """Whether ``grants`` administer ``project`` (an account administrator administers every project)."""
    return grants.is_admin or (project is not None and grants.projects.get(project) == PROJECT_ADMIN)


def refusal(action: Action, level: str, subject_type: SubjectType, subject_id: str, project: str | None) -> str:
    """Why a principal may not ``action`` a value: the message of a ``forbidden`` error."""
    if subject_type not in ACCOUNT_SUBJECTS and project is None and level != ACCOUNT_ADMIN:
        return (f"{subject_type.value} {subject_id} is not registered to a project, so only account "
                f"administrators may {action.value} its values; register it first")
    where = "the account" if subject_type in ACCOUNT_SUBJECTS or level == ACCOUNT_ADMIN else f"project {project}"
    return f"this field's {action.value}_access requires {level} on {where}"
